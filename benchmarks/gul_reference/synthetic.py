"""A small synthetic Oasis model that exercises every branch of the ground-up loss sampler.

Unlike PiWind (one intensity bin per areaperil, mid-point damage bins), it has hazard
uncertainty (1-4 intensity bins per areaperil, some with zero probability), damage bins whose
mean is off-centre (both roots of the quadratic interpolation), point bins, a zero-TIV
coverage, coverages with 1-3 items (sub-perils) so the allocation rules matter, shared damage
groups, and damage and hazard correlation.

:func:`write_synthetic` writes it as Oasis files (``static/`` and ``input/``) with numpy only,
so the reference's ``gulmc`` can run on it (see ``run_reference.py``) and the tests can rebuild
the same model bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_INTENSITY = 12
N_VULNERABILITIES = 6
N_AREAPERILS = 15
N_EVENTS = 30
N_COVERAGES = 16

DAMAGE_BINS = np.array(
    [  # bin_index, bin_from, bin_to, interpolation, damage_type
        (1, 0.0, 0.0, 0.0, 0),
        (2, 0.0, 0.1, 0.05, 0),    # mid-point: linear
        (3, 0.1, 0.2, 0.12, 0),    # x = 0.2: quadratic, b > 0
        (4, 0.2, 0.4, 0.36, 0),    # x = 0.8: quadratic, b < 0
        (5, 0.4, 0.5, 0.45, 0),
        (6, 0.5, 0.6, 0.58, 0),    # x = 0.8
        (7, 0.6, 0.8, 0.65, 0),    # x = 0.25
        (8, 0.8, 0.9, 0.85, 0),
        (9, 0.9, 1.0, 0.999, 0),   # x close to 1
        (10, 1.0, 1.0, 1.0, 0),
    ],
    dtype=[("bin_index", "<i4"), ("bin_from", "<f4"), ("bin_to", "<f4"), ("interpolation", "<f4"),
           ("damage_type", "<i4")],
)


def _pmf(rng: np.random.Generator, n: int, zeros: float) -> np.ndarray:
    """A float32 pmf over n bins (some zero) whose float64 sum is 1 within 1e-7."""
    weights = rng.gamma(0.7, size=n) * (rng.random(n) > zeros)
    if weights.sum() == 0:
        weights[rng.integers(n)] = 1.0
    pmf = (weights / weights.sum()).astype(np.float32)
    top = int(np.argmax(pmf))
    pmf[top] = np.float32(pmf[top] + (1.0 - pmf.astype(np.float64).sum()))
    return pmf


def synthetic_tables(seed: int = 20260101) -> dict[str, np.ndarray]:
    """The synthetic model and portfolio as structured arrays (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    n_damage = len(DAMAGE_BINS)
    vulnerability = []
    for v in range(1, N_VULNERABILITIES + 1):
        for i in range(1, N_INTENSITY + 1):
            # damage grows with intensity: shift the weights towards higher bins
            pmf = _pmf(rng, n_damage, zeros=0.3)
            for d in np.flatnonzero(pmf > 0):
                vulnerability.append((v, i, d + 1, pmf[d]))
    vulnerability = np.array(vulnerability, dtype=[("vulnerability_id", "<i4"), ("intensity_bin_id", "<i4"),
                                                   ("damage_bin_id", "<i4"), ("probability", "<f4")])
    footprint = []
    event_ids = np.arange(1, N_EVENTS + 1, dtype=np.int32)
    for event in event_ids:
        if event % 11 == 0:
            continue  # a few events have no footprint at all
        for areaperil in np.sort(rng.choice(np.arange(1, N_AREAPERILS + 3), size=rng.integers(2, 10),
                                            replace=False)):
            n_bins = int(rng.integers(1, 5))
            bins = rng.choice(np.arange(1, N_INTENSITY + 1), size=n_bins, replace=False)
            pmf = _pmf(rng, n_bins, zeros=0.15)
            for b, p in zip(bins, pmf, strict=True):
                footprint.append((event, areaperil, b, p))
    footprint = np.array(footprint, dtype=[("event_id", "<i4"), ("areaperil_id", "<u4"), ("intensity_bin_id", "<i4"),
                                           ("probability", "<f4")])
    items, correlations = [], []
    coverage_tiv = np.round(rng.uniform(1e4, 1e6, N_COVERAGES), -2).astype(np.float32)
    coverage_tiv[5] = 0.0  # a coverage without value
    item_id = 0
    for coverage in range(1, N_COVERAGES + 1):
        location = (coverage - 1) // 2  # two coverages per location share damage groups
        for peril in range(int(rng.integers(1, 4))):
            item_id += 1
            areaperil = int(rng.integers(1, N_AREAPERILS + 1))
            vuln = int(rng.integers(1, N_VULNERABILITIES + 1))
            peril_group = 1 + peril % 2
            group_id = 1000 + 10 * location + peril_group
            items.append((item_id, coverage, areaperil, vuln, group_id))
            correlations.append((item_id, peril_group, 0.4 if peril_group == 1 else 0.0, 500 + location,
                                 0.3 if peril_group == 1 else 0.0, 0))
    items = np.array(items, dtype=[("item_id", "<i4"), ("coverage_id", "<u4"), ("areaperil_id", "<u4"),
                                   ("vulnerability_id", "<i4"), ("group_id", "<u4")])
    correlations = np.array(correlations, dtype=[("item_id", "<i4"), ("peril_correlation_group", "<i4"),
                                                 ("damage_correlation_value", "<f4"), ("hazard_group_id", "<i4"),
                                                 ("hazard_correlation_value", "<f4"), ("source_item_id", "<i4")])
    coverages = np.array(list(zip(range(1, N_COVERAGES + 1), coverage_tiv, strict=True)),
                         dtype=[("coverage_id", "<u4"), ("tiv", "<f4")])
    return {"damage_bins": DAMAGE_BINS.copy(), "vulnerability": vulnerability, "footprint": footprint,
            "events": event_ids, "items": items, "coverages": coverages, "correlations": correlations}


def _write_csv(path: Path, array: np.ndarray) -> None:
    names = array.dtype.names
    lines = [",".join(names)]
    for row in array:
        lines.append(",".join(repr(float(v)) if isinstance(v, np.floating) else str(int(v)) for v in row))
    path.write_text("\n".join(lines) + "\n")


def write_synthetic(static_dir: Path, input_dir: Path, seed: int = 20260101) -> dict[str, np.ndarray]:
    """Write the synthetic model (``.bin`` files) and portfolio (``.csv`` files); return the tables."""
    tables = synthetic_tables(seed)
    static_dir.mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    tables["damage_bins"].tofile(static_dir / "damage_bin_dict.bin")
    with open(static_dir / "vulnerability.bin", "wb") as out:
        out.write(np.int32(len(tables["damage_bins"])).tobytes())
        out.write(tables["vulnerability"].tobytes())
    footprint = tables["footprint"]
    body = np.empty(len(footprint), dtype=[("areaperil_id", "<u4"), ("intensity_bin_id", "<i4"),
                                           ("probability", "<f4")])
    for name in body.dtype.names:
        body[name] = footprint[name]
    event_ids, starts, counts = np.unique(footprint["event_id"], return_index=True, return_counts=True)
    index = np.empty(len(event_ids), dtype=[("event_id", "<i4"), ("offset", "<i8"), ("size", "<i8")])
    index["event_id"] = event_ids
    index["offset"] = 8 + starts * body.dtype.itemsize
    index["size"] = counts * body.dtype.itemsize
    with open(static_dir / "footprint.bin", "wb") as out:
        out.write(np.array([N_INTENSITY, 1], dtype="<i4").tobytes())
        out.write(body.tobytes())
    index.tofile(static_dir / "footprint.idx")
    tables["events"].tofile(static_dir / "events.bin")
    _write_csv(input_dir / "items.csv", tables["items"])
    _write_csv(input_dir / "coverages.csv", tables["coverages"])
    _write_csv(input_dir / "correlations.csv", tables["correlations"])
    return tables
