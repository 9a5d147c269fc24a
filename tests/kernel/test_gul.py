"""Ground-up loss sampler: the kernel against its naive twin, against the reference's gulmc outputs,
and the invariants (independence of event blocks and item order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.gul_reference.run_reference import decode_gul_stream
from benchmarks.gul_reference.synthetic import DAMAGE_BINS, N_INTENSITY, synthetic_tables
from perilflow.kernel.gul import (
    N_SPECIAL,
    gul_stream_bytes,
    prepare_items,
    read_gul_inputs,
    sample_event_block,
    split_events,
)
from perilflow.kernel.gul.core import ground_up_loss, pdf_to_cdf, sample_damage
from perilflow.kernel.gul.random import (
    correlated_uniforms,
    damage_seed,
    fill_uniforms,
    hazard_seed,
    normal_tables,
    philox4x32_7,
)
from perilflow.kernel.model import ModelData, Vulnerability, footprint_from_records, load_model_data
from tests.conftest import REPO_ROOT, require_shared
from tests.kernel import naive_gul as naive

ASSETS = REPO_ROOT / "tests" / "assets" / "piwind_gul"
F32 = np.float32


# --------------------------------------------------------------------------- building blocks


def make_model(tables: dict, damage_bins: np.ndarray | None = None) -> ModelData:
    """ModelData held in memory from synthetic tables."""
    bins = DAMAGE_BINS if damage_bins is None else damage_bins
    rows = tables["vulnerability"]
    ids = np.unique(rows["vulnerability_id"])
    array = np.zeros((len(ids), len(bins), N_INTENSITY), np.float32)
    array[np.searchsorted(ids, rows["vulnerability_id"]), rows["damage_bin_id"] - 1,
          rows["intensity_bin_id"] - 1] = rows["probability"]
    return ModelData(footprint=footprint_from_records(tables["footprint"], N_INTENSITY),
                     vulnerability=Vulnerability(ids=ids.astype(np.int32), array=array), damage_bins=bins)


def run_kernel(model, items, coverages, correlations, events, n, **options) -> dict:
    """(event_id, item_id) -> float32 loss row, with the records' order checked on the way."""
    ptr, rows, losses = sample_event_block(model, items, coverages, events, n, correlations=correlations, **options)
    out = {}
    fields = ("item_id", "coverage_id", "areaperil_id", "vulnerability_id")
    for e, event in enumerate(events):
        ids = items["item_id"][rows[ptr[e]:ptr[e + 1]]]
        hit = [{f: int(items[f][r]) for f in fields} for r in rows[ptr[e]:ptr[e + 1]]]
        assert ids.tolist() == naive.record_order(hit), "records of an event must come in the reference's order"
        for k, item_id in enumerate(ids):
            out[(int(event), int(item_id))] = losses[ptr[e] + k].astype(np.float32)
    return out


def run_naive(model, tables, items, coverages, correlations, events, n, *, alloc_rule=1, effective_damageability=False,
              random_generator=2, gul_threshold=0.0) -> dict:
    vulnerability = {int(v): model.vulnerability.array[k] for k, v in enumerate(model.vulnerability.ids)}
    corr = {int(c["item_id"]): c for c in correlations} if correlations is not None else {}
    item_list = []
    for item in items:
        c = corr.get(int(item["item_id"]))
        item_list.append({
            "item_id": int(item["item_id"]), "coverage_id": int(item["coverage_id"]),
            "areaperil_id": int(item["areaperil_id"]), "vulnerability_id": int(item["vulnerability_id"]),
            "group_id": int(item["group_id"]),
            "peril_group": int(c["peril_correlation_group"]) if c is not None else 0,
            "damage_rho": c["damage_correlation_value"] if c is not None else F32(0),
            "hazard_group_id": int(c["hazard_group_id"]) if c is not None else 0,
            "hazard_rho": c["hazard_correlation_value"] if c is not None else F32(0)})
    tiv = {int(c["coverage_id"]): float(c["tiv"]) for c in coverages}
    footprint = tables["footprint"]
    tables_or_none = normal_tables() if correlations is not None else None
    out = {}
    for event in events:
        result = naive.naive_event(int(event), footprint[footprint["event_id"] == event], vulnerability,
                                   model.damage_bins, item_list, tiv, n, alloc_rule=alloc_rule,
                                   effective=effective_damageability, generator=random_generator,
                                   tables=tables_or_none, threshold=gul_threshold)
        for item_id, row in result.items():
            out[(int(event), item_id)] = np.array(row, dtype=np.float32)
    return out


def assert_same(ours: dict, theirs: dict, rtol: float = 1e-6) -> None:
    assert sorted(ours) == sorted(theirs)
    keys = sorted(ours)
    a = np.array([ours[k] for k in keys], dtype=np.float64)
    b = np.array([theirs[k] for k in keys], dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6 * max(1.0, float(np.abs(b).max())) * 1e-3)


@pytest.fixture(scope="module")
def synthetic():
    tables = synthetic_tables()
    return tables, make_model(tables)


# --------------------------------------------------------------------------- random numbers


def test_philox_known_answers() -> None:
    """Random123's known-answer vectors for philox4x32, 7 rounds (and the reference's own output)."""
    assert [int(w) for w in philox4x32_7(0, 0, 0, 0, 0, 0)] == [0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48]
    pi = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0)
    assert [int(w) for w in philox4x32_7(*pi)] == [0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A]
    ones = [int(w) for w in philox4x32_7(*([0xFFFFFFFF] * 6))]
    assert ones == [0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662]
    assert list(naive.philox4x32_7(pi[:4], pi[4:])) == [0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A]


def test_generators_match_the_reference() -> None:
    """Rows the reference (oasislmf 2.5.8) produced for these seeds."""
    row = np.empty(7)
    fill_uniforms(2, 12345, row)
    assert row.tolist() == [0.5682991616361375, 0.28155056965936504, 0.5765491925911711, 0.3946403025516442,
                            0.05289641262165137, 0.8841991427554083, 0.766843106797231]
    fill_uniforms(2, 2**31 - 1, row)
    assert row.tolist() == [0.7346234226798904, 0.27635856521581964, 0.6924523346990878, 0.29535476091716967,
                            0.12751750435147965, 0.927840206007074, 0.5229260099253484]
    row = np.empty(5)
    fill_uniforms(1, 42, row)
    assert row.tolist() == [0.32509197623052755, 0.009857138718016767, 0.653601211637719, 0.8802683031605927,
                            0.5687962719115127]
    fill_uniforms(0, 42, row[:3])
    assert row[:3].tolist() == [0.3745401188473625, 0.9507143064099162, 0.7319939418114051]
    assert damage_seed(833720067, 1) == 1269801216 and hazard_seed(833720067, 1) == 576521495
    assert damage_seed(4294967295, 2147483647) == 808424374


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 100])
def test_latin_hypercube_rows(n: int) -> None:
    for seed in (0, 7, 2**31 - 1):
        for generator in (1, 2):
            row = np.empty(n)
            fill_uniforms(generator, seed, row)
            strata = np.ceil(row * n).astype(int)  # each value in its own stratum ((k-1)/n, k/n]
            assert sorted(strata.tolist()) == list(range(1, n + 1))
        row = np.empty(n)
        fill_uniforms(2, seed, row)
        assert row.tolist() == naive.latin_hypercube_philox(seed, n)
        fill_uniforms(0, seed, row)
        assert row.tolist() == naive.uniforms(0, seed, n)


def test_normal_tables_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    inverse, cdf = normal_tables()
    grid = np.linspace(1e-16, 1 - 1e-16, 1_000_000)
    np.testing.assert_allclose(inverse, stats.norm.ppf(grid), rtol=4e-15, atol=1e-15)
    np.testing.assert_allclose(cdf, stats.norm.cdf(np.linspace(-20.0, 20.0, 1_000_000)), rtol=1e-13, atol=1e-16)


def test_correlated_uniforms() -> None:
    inverse, cdf = normal_tables()
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.random(200), [0.0, 1e-9, 0.01, 0.025, 0.975, 0.99, 1.0]])
    y = np.concatenate([rng.random(200), [0.3, 0.999, 0.5, 0.5, 0.01, 1.0, 0.0]])
    for rho in (F32(0.0), F32(0.5), F32(0.7), F32(1.0)):
        out = np.empty(len(x))
        correlated_uniforms(x, y, rho, inverse, cdf, out)
        expected = [naive.correlated(a, b, rho, (inverse, cdf)) for a, b in zip(x, y, strict=True)]
        np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-15)
        if rho == 0:
            np.testing.assert_allclose(out, y, atol=2e-6)
        if rho == 1:
            np.testing.assert_allclose(out, x, atol=2e-6)


# --------------------------------------------------------------------------- CDFs and interpolation


def test_pdf_to_cdf_stops_and_trims() -> None:
    cdf = np.empty(6, np.float32)
    assert pdf_to_cdf(np.array([0.2, 0.3, 0, 0.5, 0, 0], np.float32), cdf) == 4
    assert pdf_to_cdf(np.array([0.5, 0.5, 0.0], np.float32), cdf) == 2
    assert pdf_to_cdf(np.array([0.3, 0.2, 0, 0], np.float32), cdf) == 2  # short of 1: flat tail dropped
    assert pdf_to_cdf(np.array([0, 0, 0], np.float32), cdf) == 1
    rng = np.random.default_rng(1)
    for pdf in (np.array([0.1, 0.899999, 1e-6, 0.1], np.float32), (rng.random(6) / 3).astype(np.float32)):
        n = pdf_to_cdf(pdf, cdf)
        assert list(cdf[:n]) == naive.cdf_of(pdf)


@pytest.mark.parametrize("bin_from, bin_to, mean", [
    (0.3, 0.3, 0.3),     # point bin
    (0.0, 0.1, 0.05),    # linear
    (0.1, 0.2, 0.12),    # quadratic, b > 0
    (0.2, 0.4, 0.36),    # quadratic, b < 0
    (0.5, 0.6, 0.5667),  # x = 2/3: b = 0
    (10.0, 500.0, 400.0),
])
def test_interpolation_branches_match_naive(bin_from: float, bin_to: float, mean: float) -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        p0, p1 = np.sort(rng.random(2)).astype(np.float32)
        for r in (float(p0), float(p1), float(p0) + rng.random() * float(p1 - p0)):
            scaling = float(rng.choice([1.0, 250000.0, 1234.5]))
            got = ground_up_loss(F32(bin_from), F32(bin_to), F32(mean), p0, p1, r, scaling)
            assert got == naive.interpolate(bin_from, bin_to, mean, p0, p1, r, scaling)
    # The ends of a bin map to its bounds when the linear density its mean implies stays >= 0 (mean in
    # the middle third of the bin). Otherwise the reference's root covers only part of the bin: it
    # starts above bin_from (mean in the top third) or stops short of bin_to (bottom third).
    p0, p1 = F32(0.25), F32(0.75)
    bottom = ground_up_loss(F32(bin_from), F32(bin_to), F32(mean), p0, p1, 0.25, 1.0)
    top = ground_up_loss(F32(bin_from), F32(bin_to), F32(mean), p0, p1, 0.75, 1.0)
    x = (mean - bin_from) / (bin_to - bin_from) if bin_to > bin_from else 0.5
    assert bottom == pytest.approx(bin_from, rel=1e-6) if x <= 2 / 3 else bin_from <= bottom < bin_to
    assert top == pytest.approx(bin_to, rel=1e-6) if x >= 1 / 3 else bin_from < top < bin_to


def test_sample_damage_boundaries() -> None:
    bins = DAMAGE_BINS
    cdf = np.array([0.1, 0.1, 0.4, 0.7, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999], np.float32)
    for n in (1, 4, 10):
        for r in [0.0, 1e-12, 0.1, 0.1000001, 0.4, float(cdf[3]), 0.85, 0.99999, 1.0] + list(cdf[:n]):
            got = sample_damage(float(r), cdf, n, bins, 1000.0)
            assert got == naive.sample(float(r), [F32(c) for c in cdf[:n]], bins, 1000.0), (n, r)
    assert sample_damage(0.1, cdf, 10, bins, 1000.0) == 0.0  # r on a CDF value stays in that (point) bin
    assert sample_damage(1.0, cdf, 10, bins, 1000.0) > 1000.0 - 1e-9  # beyond the CDF: last bin


# --------------------------------------------------------------------------- whole events


CONFIGS = [{"alloc_rule": rule, "effective_damageability": eff} for rule in (0, 1, 2, 3) for eff in (False, True)]


@pytest.mark.parametrize("correlated", [True, False], ids=["correlation", "no-correlation"])
@pytest.mark.parametrize("options", CONFIGS,
                         ids=lambda o: f"a{o['alloc_rule']}{'-eff' if o['effective_damageability'] else ''}")
def test_events_match_naive_twin(synthetic, options: dict, correlated: bool) -> None:
    tables, model = synthetic
    correlations = tables["correlations"] if correlated else None
    ours = run_kernel(model, tables["items"], tables["coverages"], correlations, tables["events"], 12, **options)
    theirs = run_naive(model, tables, tables["items"], tables["coverages"], correlations, tables["events"], 12,
                       **options)
    assert len(ours) > 100
    assert_same(ours, theirs)


@pytest.mark.parametrize("case", ["mersenne", "partial-correlations", "threshold", "no-samples"])
def test_more_cases_match_naive_twin(synthetic, case: str) -> None:
    tables, model = synthetic
    correlations, options, n = tables["correlations"], {}, 8
    if case == "mersenne":
        options = {"random_generator": 0, "alloc_rule": 2}
    elif case == "partial-correlations":  # items without a row fall in peril group 0: the reference's seeds quirk
        correlations = correlations[::2]
    elif case == "threshold":
        options = {"gul_threshold": 20000.0, "alloc_rule": 3}
    else:
        n = 0
    ours = run_kernel(model, tables["items"], tables["coverages"], correlations, tables["events"], n, **options)
    theirs = run_naive(model, tables, tables["items"], tables["coverages"], correlations, tables["events"], n,
                       **options)
    assert_same(ours, theirs)
    if case == "threshold":
        samples = np.array([row[N_SPECIAL:] for row in ours.values()])
        assert np.all((samples == 0) | (samples >= 20000.0)) and np.any(samples == 0)


@pytest.mark.parametrize("damage_type, scale", [(0, 1.0), (0, 5000.0), (1, 1.0), (2, 5000.0), (3, 1.0)],
                         ids=["default-ratio", "default-amount", "relative", "absolute", "duration"])
def test_damage_types_match_naive_twin(damage_type: int, scale: float) -> None:
    tables = synthetic_tables(seed=7)
    bins = DAMAGE_BINS.copy()
    for field in ("bin_from", "bin_to", "interpolation"):
        bins[field] = bins[field] * np.float32(scale)
    bins["damage_type"] = damage_type
    model = make_model(tables, bins)
    ours = run_kernel(model, tables["items"], tables["coverages"], tables["correlations"], tables["events"], 6)
    theirs = run_naive(model, tables, tables["items"], tables["coverages"], tables["correlations"],
                       tables["events"], 6)
    assert_same(ours, theirs)
    maxima = {round(float(row[0]), 3) for row in ours.values()}
    if damage_type == 2 or (damage_type == 0 and scale > 1):  # absolute: the maximum is the last bin, in currency
        assert maxima <= {0.0, 5000.0} | {round(float(v), 3) for v in bins["bin_to"]}


# --------------------------------------------------------------------------- invariants


def test_blocks_event_order_and_item_order_do_not_matter(synthetic) -> None:
    tables, model = synthetic
    items, coverages, correlations, events = tables["items"], tables["coverages"], tables["correlations"], \
        tables["events"]
    options = {"alloc_rule": 1}
    whole = run_kernel(model, items, coverages, correlations, events, 10, **options)
    prepared = prepare_items(model, items, coverages, correlations)
    for size in (1, 3):
        merged = {}
        for start in range(0, len(events), size):
            block = events[start:start + size]
            ptr, rows, losses = sample_event_block(model, prepared, None, block, 10, **options)
            for e, event in enumerate(block):
                for k in range(ptr[e], ptr[e + 1]):
                    merged[(int(event), int(items["item_id"][rows[k]]))] = losses[k].astype(np.float32)
        assert sorted(merged) == sorted(whole)
        assert all(np.array_equal(merged[key], whole[key]) for key in whole)
    blocks = split_events(model, prepared, events, 40)
    assert np.array_equal(np.concatenate(blocks), events) and len(blocks) > 3
    merged = {}
    for block in blocks:
        ptr, rows, losses = sample_event_block(model, prepared, None, block, 10, **options)
        assert int(ptr[-1]) <= 40 or len(block) == 1
        for e, event in enumerate(block):
            for k in range(ptr[e], ptr[e + 1]):
                merged[(int(event), int(items["item_id"][rows[k]]))] = losses[k].astype(np.float32)
    assert all(np.array_equal(merged[key], whole[key]) for key in whole) and len(merged) == len(whole)
    rng = np.random.default_rng(3)
    shuffled = run_kernel(model, items[rng.permutation(len(items))], coverages, correlations[rng.permutation(
        len(correlations))], rng.permutation(events), 10, **options)
    assert sorted(shuffled) == sorted(whole)
    assert all(np.array_equal(shuffled[key], whole[key]) for key in whole)


@pytest.mark.parametrize("alloc_rule", [0, 1, 2, 3])
def test_float32_records_hold_the_same_values(synthetic, alloc_rule: int) -> None:
    """The losses stage keeps records as float32: every value (samples and sidx -5..-1, after
    allocation and the threshold) is a float32 value, so the two dtypes give the same numbers."""
    tables, model = synthetic
    prepared = prepare_items(model, tables["items"], tables["coverages"], tables["correlations"])
    options = {"alloc_rule": alloc_rule, "gul_threshold": 25.0}
    p64, r64, l64 = sample_event_block(model, prepared, None, tables["events"], 10, **options)
    p32, r32, l32 = sample_event_block(model, prepared, None, tables["events"], 10, dtype=np.float32, **options)
    assert l64.dtype == np.float64 and l32.dtype == np.float32 and l64.shape[0] > 0
    assert np.array_equal(p32, p64) and np.array_equal(r32, r64)
    assert np.array_equal(l32.astype(np.float64), l64)
    with pytest.raises(ValueError, match="dtype must be"):
        sample_event_block(model, prepared, None, tables["events"], 10, dtype=np.float16)


def test_arguments_are_checked(synthetic) -> None:
    tables, model = synthetic
    items, coverages, events = tables["items"], tables["coverages"], tables["events"]
    with pytest.raises(ValueError, match="alloc_rule"):
        sample_event_block(model, items, coverages, events, 5, alloc_rule=4)
    with pytest.raises(ValueError, match="random_generator"):
        sample_event_block(model, items, coverages, events, 5, random_generator=3)
    with pytest.raises(ValueError, match="n_samples"):
        sample_event_block(model, items, coverages, events, -1)
    with pytest.raises(ValueError, match="missing 'group_id'"):
        sample_event_block(model, items[["item_id", "coverage_id", "areaperil_id", "vulnerability_id"]], coverages,
                           events, 5)
    bad = items.copy()
    bad["vulnerability_id"][0] = 99
    with pytest.raises(ValueError, match=r"vulnerability ids \[99\]"):
        sample_event_block(model, bad, coverages, events, 5)
    bad = items.copy()
    bad["item_id"][1] = bad["item_id"][0]
    with pytest.raises(ValueError, match="repeat an item_id"):
        sample_event_block(model, bad, coverages, events, 5)
    with pytest.raises(ValueError, match="coverage ids outside"):
        sample_event_block(model, items, coverages[:3], events, 5)
    prepared = prepare_items(model, items, coverages)
    with pytest.raises(ValueError, match="another ModelData"):
        sample_event_block(make_model(tables), prepared, None, events, 5)
    ptr, rows, losses = sample_event_block(model, prepared, None, np.array([11, 999], np.int32), 3)
    assert ptr.tolist() == [0, 0, 0] and losses.shape == (0, 8)


def test_gul_stream_round_trip(synthetic) -> None:
    tables, model = synthetic
    prepared = prepare_items(model, tables["items"], tables["coverages"], tables["correlations"])
    events = tables["events"]
    ptr, rows, losses = sample_event_block(model, prepared, None, events, 4)
    decoded = decode_gul_stream(gul_stream_bytes(events, ptr, prepared.item_ids[rows], losses), 4)
    np.testing.assert_array_equal(decoded["item_id"], prepared.item_ids[rows])
    np.testing.assert_array_equal(decoded["event_id"], np.repeat(events, np.diff(ptr)))
    np.testing.assert_array_equal(decoded["losses"], losses.astype(np.float32))


# --------------------------------------------------------------------------- the reference's own outputs


def compare_with_asset(asset: Path, events, ptr, item_ids, losses) -> int:
    """Check our records against a reference extract; returns the number of values compared."""
    ref = np.load(asset)
    ours_key = np.repeat(np.asarray(events, np.int64), np.diff(ptr)) * 2**32 + item_ids
    ref_key = ref["event_id"].astype(np.int64) * 2**32 + ref["item_id"]
    position = np.argsort(ours_key)[np.searchsorted(np.sort(ours_key), ref_key)]
    assert len(ours_key) == len(ref_key) and np.array_equal(ours_key[position], ref_key)
    np.testing.assert_array_equal(losses[position, N_SPECIAL - 1].astype(np.float32), ref["mean"])
    full = position[ref["full_rows"]]
    np.testing.assert_array_equal(losses[full].astype(np.float32), ref["losses"])
    return int(len(ref_key) + ref["losses"].size)


@pytest.mark.parametrize("asset, options", [
    ("synthetic_S20_a1.npz", {"alloc_rule": 1}),
    ("synthetic_S20_a0_effective.npz", {"alloc_rule": 0, "effective_damageability": True}),
    ("synthetic_S20_a2_rng1.npz", {"alloc_rule": 2, "random_generator": 1}),
    ("synthetic_S20_a3_rng0.npz", {"alloc_rule": 3, "random_generator": 0}),
])
def test_synthetic_model_equals_reference_gulmc(synthetic, asset: str, options: dict) -> None:
    """gulmc (oasislmf 2.5.8) on the synthetic model: every value equal bit for bit (as float32)."""
    tables, model = synthetic
    prepared = prepare_items(model, tables["items"], tables["coverages"], tables["correlations"])
    ptr, rows, losses = sample_event_block(model, prepared, None, tables["events"], 20, **options)
    assert compare_with_asset(ASSETS / asset, tables["events"], ptr, prepared.item_ids[rows], losses) > 5000


@pytest.mark.reference
def test_piwind_loc10_equals_reference_gulmc() -> None:
    """PiWind loc10, 10 samples, allocation rule 1, correlations on, default generator: all 7,310
    (event, item) records, every column, equal the reference's gulmc output bit for bit (as float32)."""
    piwind = require_shared("piwind")
    items, coverages, correlations = read_gul_inputs(piwind / "expected-inputs" / "loc10")
    model = load_model_data(piwind / "model_data" / "PiWind", event_set="p", occurrence_id="lt",
                            vulnerability_ids=np.unique(items["vulnerability_id"]))
    prepared = prepare_items(model, items, coverages, correlations)
    ptr, rows, losses = sample_event_block(model, prepared, None, model.events, 10, alloc_rule=1)
    assert int(ptr[-1]) == 7310
    assert compare_with_asset(ASSETS / "piwind_loc10_S10_a1.npz", model.events, ptr, prepared.item_ids[rows],
                              losses) > 100000


# --------------------------------------------------------------------------- options and inputs


def test_vulnerability_adjustments_scale_the_damage_random_values(synthetic) -> None:
    tables, model = synthetic
    items, coverages, events = tables["items"], tables["coverages"], tables["events"]
    plain = prepare_items(model, items, coverages)
    zero = prepare_items(model, items, coverages,
                         vulnerability_adjustments={int(v): 0.0 for v in np.unique(items["vulnerability_id"])})
    _, _, expected = sample_event_block(model, plain, None, events, 6)
    _, _, losses = sample_event_block(model, zero, None, events, 6)
    np.testing.assert_array_equal(losses[:, :N_SPECIAL], expected[:, :N_SPECIAL])  # moments do not change
    assert np.all(losses[:, N_SPECIAL:] == 0) and np.any(expected[:, N_SPECIAL:] > 0)  # r = 0: the no-damage bin


def test_read_correlations_variants(tmp_path: Path) -> None:
    from perilflow.kernel.gul import read_correlations
    from perilflow.kernel.model.dtypes import CORRELATIONS_DTYPE, CORRELATIONS_LEGACY_DTYPE

    assert read_correlations(tmp_path) is None
    rows = np.array([(1, 1, 0.7, 11, 0.1, 0), (2, 2, 0.5, 12, 0.0, 0)], CORRELATIONS_DTYPE)
    (tmp_path / "correlations.csv").write_text(
        "item_id,peril_correlation_group,damage_correlation_value,hazard_group_id,hazard_correlation_value\n"
        "1,1,0.7,11,0.1\n2,2,0.5,12,0.0\n")
    np.testing.assert_array_equal(read_correlations(tmp_path), rows)
    rows.tofile(tmp_path / "correlations.bin")
    np.testing.assert_array_equal(read_correlations(tmp_path), rows)
    legacy = np.zeros(3, CORRELATIONS_LEGACY_DTYPE)  # 60 bytes: not a whole number of 24-byte records
    legacy["item_id"] = [1, 2, 3]
    legacy.tofile(tmp_path / "correlations.bin")
    assert read_correlations(tmp_path)["item_id"].tolist() == [1, 2, 3]
