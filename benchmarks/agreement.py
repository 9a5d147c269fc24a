"""How closely two engines' ORD outputs agree: perilflow's against the reference's, file by file.

The losses benchmark runs both engines on the same inputs; this module compares what they
wrote, as issue 4 states its criteria:

* **deterministic** quantities -- ALT ``SampleType`` 1, EPT ``EPCalc`` 1, MELT / MPLT
  ``SampleType`` 1, SELT / SPLT ``SampleId`` -1 (the analytical mean), and the exposure columns
  (``FootprintExposure``, ``MeanImpactedExposure``, ``MaxImpactedExposure``, ``ImpactedExposure``)
  of those rows: within a relative 1e-5 (on a sampled row an exposure column can be a sampled
  statistic, such as MPLT SampleType 2's mean impacted exposure over the samples);
* the **sampled AAL** (ALT ``SampleType`` 2): within 0.5%;
* the **sampled EPT** losses at 10-1000 years (``EPCalc`` 2-4): within 2%.

Rows are matched by their integer key columns (event, period, summary, sample, ...), which must
be equal in both files. A relative difference is ``|ours - ref| / max(|ref|, 1)``: one monetary
unit is the floor, so float32 noise around zero is not reported as a large relative error.

    python -m benchmarks.agreement OURS_OUTPUT_DIR REFERENCE_OUTPUT_DIR [--keep-deterministic DEST]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TOLERANCE = {"deterministic": 1e-5, "sampled_aal": 5e-3, "sampled_ept_10_1000": 2e-2}
EXPOSURE_COLUMNS = ("FootprintExposure", "MeanImpactedExposure", "MaxImpactedExposure", "ImpactedExposure")
#: the column that says whether a row is the analytical mean, and its value there, per table
DETERMINISTIC_ROW = {"palt": ("SampleType", 1), "ept": ("EPCalc", 1), "melt": ("SampleType", 1),
                     "mplt": ("SampleType", 1), "selt": ("SampleId", -1), "splt": ("SampleId", -1)}
LOSS_COLUMNS = ("MeanLoss", "SDLoss", "MaxLoss", "Loss")


def relative_difference(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|ours - ref| / max(|ref|, 1)``; 0 where both are NaN."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    both_nan = np.isnan(ours) & np.isnan(ref)
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1.0)
    return np.where(both_nan, 0.0, rel)


def _check_rows(name: str, ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Same columns and the same rows (integer key columns equal, in order), or a ValueError naming ``name``."""
    keys = [c for c in ref.columns if ref[c].dtype.kind in "iu"]
    if list(ours.columns) != list(ref.columns):
        raise ValueError(f"{name}: columns {list(ours.columns)} differ from the reference's {list(ref.columns)}")
    if ours.shape != ref.shape or not np.array_equal(ours[keys].to_numpy(), ref[keys].to_numpy()):
        raise ValueError(f"{name}: rows differ from the reference's ({len(ours)} against {len(ref)}, keys {keys})")


def _aligned(ours_path: Path, ref_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ours, ref = pd.read_csv(ours_path), pd.read_csv(ref_path)
    _check_rows(ours_path.name, ours, ref)
    return ours, ref


def _is_criterion(table: str, column: str) -> bool:
    """The SD of equal samples is float32 noise around 0 in both engines: MELT/MPLT's SDLoss is no criterion."""
    return not (column == "SDLoss" and table in ("melt", "mplt"))


def _worst(values: list[np.ndarray]) -> dict[str, float]:
    joined = np.concatenate(values) if values else np.zeros(0)
    if joined.size == 0:
        return {"max": 0.0, "median": 0.0, "values": 0}
    return {"max": float(joined.max()), "median": float(np.median(joined)), "values": int(joined.size)}


def compare_ord_outputs(ours: Path, ref: Path) -> dict[str, Any]:
    """Relative differences of every ORD table both folders hold, grouped by the criteria above."""
    groups: dict[str, list[np.ndarray]] = {"deterministic": [], "sampled_aal": [], "sampled_ept_10_1000": [],
                                           "sampled_other": []}
    tables = []
    for ref_file in sorted(ref.glob("*_S*_*.csv")):
        ours_file = ours / ref_file.name
        table = ref_file.stem.split("_")[-1]
        if table == "summary-info" or not ours_file.exists():
            continue
        tables.append(ref_file.name)
        a, b = _aligned(ours_file, ref_file)
        det_column, det_value = DETERMINISTIC_ROW.get(table, (None, None))
        is_det = (b[det_column] == det_value).to_numpy() if det_column else np.zeros(len(b), bool)
        for column in EXPOSURE_COLUMNS:
            if column in b.columns:
                # on a sampled row (e.g. MPLT SampleType 2's MeanImpactedExposure: a mean over the samples
                # with loss) an exposure column is a sampled statistic
                rel = relative_difference(a[column], b[column])
                groups["deterministic"].append(rel[is_det] if det_column else rel)
                if det_column:
                    groups["sampled_other"].append(rel[~is_det])
        for column in LOSS_COLUMNS:
            if column not in b.columns:
                continue
            if not _is_criterion(table, column):
                continue
            rel = relative_difference(a[column], b[column])
            groups["deterministic"].append(rel[is_det])
            if table == "palt" and column == "MeanLoss":
                groups["sampled_aal"].append(rel[(b["SampleType"] == 2).to_numpy()])
            elif table == "ept":  # (every EPT loss column is "Loss")
                rp = b["ReturnPeriod"].to_numpy()
                groups["sampled_ept_10_1000"].append(rel[~is_det & (rp >= 10) & (rp <= 1000)])
            else:
                groups["sampled_other"].append(rel[~is_det])
    result: dict[str, Any] = {"tables": len(tables)}
    for name, values in groups.items():
        result[name] = _worst(values)
        if name in TOLERANCE:
            result[name]["tolerance"] = TOLERANCE[name]
            result[name]["within"] = result[name]["max"] <= TOLERANCE[name]
    return result


def _deterministic_rows(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    column, value = DETERMINISTIC_ROW[table]
    return frame[frame[column] == value].reset_index(drop=True)


def keep_deterministic(ref: Path, dest: Path) -> list[Path]:
    """Write the deterministic rows of the reference's ALT, EPT, MELT and SELT tables to ``dest`` as
    ``<name>.csv.gz``: a small reference a test can compare a run with (``compare_deterministic``)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for ref_file in sorted(ref.glob("*_S*_*.csv")):
        table = ref_file.stem.split("_")[-1]
        if table not in ("palt", "ept", "melt", "selt"):
            continue   # MPLT and SPLT repeat MELT's and SELT's rows per period
        path = dest / f"{ref_file.name}.gz"
        _deterministic_rows(pd.read_csv(ref_file), table).to_csv(path, index=False)
        written.append(path)
    return written


def compare_deterministic(ours: Path, kept: Path) -> dict[str, Any]:
    """The deterministic criterion of ``ours`` against rows kept by ``keep_deterministic``."""
    values, tables = [], []
    for kept_file in sorted(kept.glob("*_S*_*.csv.gz")):
        name = kept_file.name[:-len(".gz")]
        table = name[:-len(".csv")].split("_")[-1]
        ref = pd.read_csv(kept_file)
        mine = _deterministic_rows(pd.read_csv(ours / name), table)
        _check_rows(f"{name} (deterministic rows)", mine, ref)
        tables.append(name)
        for column in EXPOSURE_COLUMNS + LOSS_COLUMNS:
            if column in ref.columns and _is_criterion(table, column):
                values.append(relative_difference(mine[column], ref[column]))
    result = _worst(values)
    result.update(tables=len(tables), tolerance=TOLERANCE["deterministic"])
    result["within"] = result["max"] <= result["tolerance"]
    return result


def summary_line(result: dict[str, Any]) -> str:
    parts = [f"{result['tables']} tables"]
    for name in ("deterministic", "sampled_aal", "sampled_ept_10_1000", "sampled_other"):
        r = result[name]
        mark = "" if "within" not in r else (" ok" if r["within"] else f" OVER {r['tolerance']:g}")
        parts.append(f"{name} max {r['max']:.1e} median {r['median']:.0e}{mark}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ours", type=Path, help="perilflow's output folder")
    parser.add_argument("reference", type=Path, help="the reference's output folder")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--keep-deterministic", type=Path, metavar="DEST",
                        help="also write the reference's deterministic rows to DEST (a test asset)")
    args = parser.parse_args(argv)
    if args.keep_deterministic:
        for path in keep_deterministic(args.reference, args.keep_deterministic):
            print(f"kept {path} ({path.stat().st_size:,} bytes)")
    result = compare_ord_outputs(args.ours, args.reference)
    print(json.dumps(result, indent=2) if args.json else summary_line(result))
    return 0 if all(result[k].get("within", True) for k in TOLERANCE) else 1


if __name__ == "__main__":
    sys.exit(main())
