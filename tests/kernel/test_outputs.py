"""ORD outputs: kernels against naive twins, properties, chunk-merge identity, and the reference.

The opt-in test at the end feeds the same synthetic loss stream to the reference's own
summarypy / eltpy / pltpy / aalpy / lecpy (oasislmf 2.5.8 installed in its own venv, default
/tmp/oasis-venv-out, or $PERILFLOW_OASIS_VENV) and compares the files byte for byte; it is
skipped when that venv is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perilflow.kernel.outputs import (
    TABLES,
    Occurrence,
    OutputSpec,
    OutputStatic,
    SetSpec,
    aal,
    accumulate_chunk,
    ept,
    format_csv,
    merge_outputs,
    summarise,
)
from perilflow.kernel.outputs.elt import melt_rows, qelt_rows, selt_rows
from perilflow.kernel.outputs.periods import period_groups, sort_records
from perilflow.kernel.outputs.plt import date_to_occ_date_id, mplt_rows, occ_date, qplt_rows, splt_rows
from perilflow.kernel.outputs.settings import SummarySetSettings, SummaryXref
from perilflow.kernel.outputs.writers import format_csv_python
from tests.conftest import require_shared
from tests.kernel import naive_outputs as naive

REFERENCE_VENV = Path(os.environ.get("PERILFLOW_OASIS_VENV", "/tmp/oasis-venv-out"))
QUANTILES = np.array([0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0], np.float32)
RETURN_PERIODS = np.array([1, 2, 5, 10, 20, 25, 50, 100, 250, 1000], np.int32)
ALL_TABLES = ("selt", "melt", "qelt", "splt", "mplt", "qplt")
ALL_EP = ept.EpFlags(*([True] * 8))
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _maps(case):
    id_to_summary = np.zeros(len(case.item_loc) + 1, np.int32)
    id_to_summary[1:] = case.item_group + 1
    risks = pd.factorize(pd.Series(list(zip(case.item_loc, case.item_building, strict=True)), dtype=object))[0]
    return id_to_summary, np.concatenate([[0], risks]).astype(np.int32)


def _records(case, with_risk=True):
    id_to_summary, id_to_risk = _maps(case)
    return summarise(case.event_ids, case.event_ptr, case.ids, case.losses, id_to_summary, int(id_to_summary.max()),
                     id_to_risk if with_risk else None)


def _naive_records(recs):
    return [(int(e), int(s), x, list(row[:3]) + list(row[3:]))
            for e, s, x, row in zip(recs.event_id, recs.summary_id, recs.expval, recs.loss, strict=True)]


def _occ(case, granular=False):
    return Occurrence.build(case.occ_event, case.occ_period, case.occ_date, case.n_periods, granular,
                            case.period_weights)


def _spec(case, perspective="gul", tables=ALL_TABLES, parquet=False, rp=True, alct=True, ep=ALL_EP):
    id_to_summary, id_to_risk = _maps(case)
    st_ = SummarySetSettings(1, (), tables, alt_period=True, alt_meanonly=True, alct=alct, ep=ep,
                             return_period_file=rp, parquet=parquet)
    xref = SummaryXref(1, id_to_summary, int(id_to_summary.max()), pd.DataFrame({"summary_id": [1]}))
    return OutputSpec(perspective, case.n_samples, (SetSpec(st_, xref),), None if perspective == "ri" else id_to_risk)


def _run_chunks(case, spec, static, n_chunks, root: Path, seed=0) -> Path:
    perm = np.random.default_rng(seed).permutation(len(case.event_ids))
    dirs = []
    for k, part in enumerate(np.array_split(perm, n_chunks)):
        ptr, ids, loss = [0], [], []
        for e in part:
            a, b = case.event_ptr[e], case.event_ptr[e + 1]
            ids.append(case.ids[a:b])
            loss.append(case.losses[a:b])
            ptr.append(ptr[-1] + b - a)
        d = root / f"chunk{k}"
        accumulate_chunk(spec, static, case.event_ids[part], np.array(ptr, np.int64),
                         np.concatenate(ids) if ids else np.zeros(0, np.int64),
                         np.concatenate(loss) if loss else np.zeros((0, 5 + case.n_samples)), d)
        dirs.append(d)
    merge_outputs(spec, static, dirs, root / "output")
    return root / "output"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# ---------------------------------------------------------------------------------------------
# writers


def test_table_columns_follow_ord():
    assert TABLES["selt"].headers == ["EventId", "SummaryId", "SampleId", "Loss", "ImpactedExposure"]
    assert TABLES["qplt"].headers[:9] == ["Period", "PeriodWeight", "EventId", "Year", "Month", "Day", "Hour",
                                         "Minute", "SummaryId"]
    assert TABLES["palt"].headers == ["SummaryId", "SampleType", "MeanLoss", "SDLoss"]
    assert TABLES["ept"].headers == ["SummaryId", "EPCalc", "EPType", "ReturnPeriod", "Loss"]
    assert TABLES["psept"].headers == ["SummaryId", "SampleId", "EPType", "ReturnPeriod", "Loss"]
    assert len(TABLES["alct"].headers) == 14 and len(TABLES["mplt"].headers) == 17


@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=40),
       st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_format_csv_matches_python_twin(values, ints):
    n = min(len(values), len(ints))
    rows = TABLES["melt"].empty(n)
    rows["EventId"] = ints[:n]
    for name in ("EventRate", "MeanLoss", "SDLoss"):
        rows[name] = values[:n]
    with np.errstate(over="ignore"):
        rows["MaxLoss"] = np.array(values[:n], np.float32) * np.float32(1e6)
        assert format_csv(rows, TABLES["melt"]) == format_csv_python(rows, TABLES["melt"])


def test_format_csv_special_values():
    rows = TABLES["selt"].empty(4)
    rows["Loss"] = [np.nan, -0.0, 2.5e15, 0.125]
    rows["ImpactedExposure"] = [np.inf, -np.inf, -0.004, 1e30]
    text = format_csv(rows, TABLES["selt"]).decode()
    big, huge = f"{float(np.float32(2.5e15)):.2f}", f"{float(np.float32(1e30)):.2f}"  # 1e30 takes the Python fallback
    assert text.splitlines() == ["0,0,0,nan,inf", "0,0,0,-0.00,-inf", f"0,0,0,{big},-0.00", f"0,0,0,0.12,{huge}"]


# ---------------------------------------------------------------------------------------------
# ELT / PLT against the naive twins


def _assert_rows(rows, expected, layout):
    assert len(rows) == len(expected)
    for got, exp in zip(rows.tolist(), expected, strict=True):
        for (name, dtype, _), g, e in zip(layout.columns, got, exp, strict=True):
            if dtype.kind == "i":
                assert g == e, name
            else:
                assert np.float32(g).tobytes() == np.float32(e).tobytes() or (np.isnan(g) and np.isnan(e)), name


@pytest.mark.parametrize("seed", range(4))
def test_elt_matches_naive(seed):
    case = naive.synthetic_case(seed, n_events=30)
    recs = _records(case)
    nrec = _naive_records(recs)
    _assert_rows(selt_rows(recs, True), naive.naive_selt(nrec, True), TABLES["selt"])
    _assert_rows(selt_rows(recs, False, keep_zeros=True), naive.naive_selt(nrec, False, True), TABLES["selt"])
    rate_ev = np.sort(case.event_ids[::2])
    rates = (rate_ev % 7 / 100).astype(np.float32)
    _assert_rows(melt_rows(recs, rate_ev, rates),
                 naive.naive_melt(nrec, dict(zip(rate_ev.tolist(), rates, strict=True))), TABLES["melt"])
    _assert_rows(qelt_rows(recs, QUANTILES), naive.naive_qelt(nrec, QUANTILES), TABLES["qelt"])


@pytest.mark.parametrize(("seed", "weighted", "granular"), [(0, False, False), (1, True, True), (2, False, True)])
def test_plt_matches_naive(seed, weighted, granular):
    case = naive.synthetic_case(seed, n_events=30, weighted=weighted, granular=granular)
    occ = _occ(case, granular)
    recs = _records(case)
    nrec = _naive_records(recs)
    _assert_rows(splt_rows(recs, occ), naive.naive_splt(nrec, occ), TABLES["splt"])
    _assert_rows(mplt_rows(recs, occ), naive.naive_mplt(nrec, occ), TABLES["mplt"])
    _assert_rows(qplt_rows(recs, occ, QUANTILES), naive.naive_qplt(nrec, occ, QUANTILES), TABLES["qplt"])


@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_occurrence_dates_round_trip(year, month, day, hour, minute, granular):
    d = int(date_to_occ_date_id(year, month, day, hour, minute, granular))
    got = tuple(int(x) for x in occ_date(d, 1 if granular else 0))
    assert got == naive.naive_date(d, granular)
    assert got == (year, month, day, hour if granular else 0, minute if granular else 0)


# ---------------------------------------------------------------------------------------------
# ALT and EP curves against the naive twins


@pytest.mark.parametrize(("seed", "weighted"), [(0, False), (1, True), (2, False)])
def test_palt_matches_naive(seed, weighted):
    case = naive.synthetic_case(seed, n_events=40, weighted=weighted)
    occ = _occ(case)
    recs = sort_records(_records(case))
    rows = aal.palt_rows(period_groups(recs, occ), recs.loss, occ.n_periods, occ.weights_or_uniform())
    expected = naive.naive_palt(_naive_records(recs), occ)
    _assert_rows(rows, expected, TABLES["palt"])


@pytest.mark.parametrize("seed", range(3))
def test_ep_tables_and_curves_match_naive(seed):
    case = naive.synthetic_case(seed, n_events=60, n_periods=20)
    occ = _occ(case)
    recs = sort_records(_records(case))
    groups = period_groups(recs, occ)
    tables = ept.lec_tables(groups, recs.loss, use_rp=False)
    cells = naive.naive_lec_cells(_naive_records(recs), occ, use_rp=False)
    assert list(zip(tables.summary_id.tolist(), tables.period_no.tolist(), strict=True)) == list(cells)
    for g, (agg, mx, used) in enumerate(cells.values()):
        assert tables.agg[g].tolist() == [float(x) for x in agg]
        assert tables.mx[g].tolist() == [float(x) for x in mx]
        assert tables.used[g].tolist() == used
    calc = ept.EpCalculator(tables, occ.n_periods, case.n_samples, None, None, int(recs.summary_id.max()))
    for eptype in (ept.OEP, ept.AEP):
        block = calc.mean_damage(eptype)
        col = 1 if eptype == ept.OEP else 0
        for s in np.unique(block.rows["SummaryId"]):
            values = [c[col][0] for (sid, _), c in cells.items() if sid == s and c[2][0]]
            ep_pts, tv_pts = naive.naive_ep_points(values, occ.n_periods)
            mine = block.rows[(block.rows["SummaryId"] == s) & (block.rows["EPType"] == eptype)]
            tv = block.rows[(block.rows["SummaryId"] == s) & (block.rows["EPType"] == eptype + 1)]
            np.testing.assert_allclose(mine["ReturnPeriod"], [p[0] for p in ep_pts], rtol=1e-6)
            np.testing.assert_allclose(mine["Loss"], [p[1] for p in ep_pts], rtol=1e-6)
            np.testing.assert_allclose(tv["Loss"], [p[1] for p in tv_pts], rtol=1e-5)
        full = calc.full_uncertainty(eptype)
        for s in np.unique(full.rows["SummaryId"]):
            values = [v for (sid, _), c in cells.items() if sid == s for v, u in zip(c[col][1:], c[2][1:], strict=True)
                      if u]
            ep_pts, _ = naive.naive_ep_points(values, occ.n_periods * case.n_samples)
            mine = full.rows[(full.rows["SummaryId"] == s) & (full.rows["EPType"] == eptype)]
            np.testing.assert_allclose(mine["Loss"], [p[1] for p in ep_pts], rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_return_period_interpolation_matches_naive(seed):
    case = naive.synthetic_case(seed, n_events=80, n_periods=50)
    occ = _occ(case)
    recs = sort_records(_records(case))
    tables = ept.lec_tables(period_groups(recs, occ), recs.loss, use_rp=True)
    rps = np.array([200, 50, 30, 25, 7, 3, 1], np.int32)
    calc = ept.EpCalculator(tables, occ.n_periods, case.n_samples, None, rps, int(recs.summary_id.max()))
    block = calc.mean_damage(ept.AEP)
    for s in np.unique(block.rows["SummaryId"]):
        sel = tables.summary_id == s
        values = tables.agg[sel, 0][tables.used[sel, 0]]
        mine = block.rows[(block.rows["SummaryId"] == s) & (block.rows["EPType"] == ept.AEP)]
        expected = [(rp, naive.naive_ep_at(values, occ.n_periods, rp)) for rp in rps]
        expected = [(rp, v) for rp, v in expected if v is not None]
        np.testing.assert_allclose(mine["ReturnPeriod"], [e[0] for e in expected])
        np.testing.assert_allclose(mine["Loss"], [e[1] for e in expected], rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# properties


cases = st.builds(
    naive.synthetic_case,
    seed=st.integers(0, 10_000),
    n_items=st.integers(1, 10),
    n_events=st.integers(1, 30),
    n_samples=st.integers(1, 6),
    n_periods=st.integers(2, 12),
    weighted=st.booleans(),
    zero_share=st.sampled_from([0.0, 0.5, 1.0]),
)


@given(cases)
@FAST
def test_aal_is_period_weighted_mean_of_plt(case):
    occ = _occ(case)
    recs = sort_records(_records(case))
    palt = aal.palt_rows(period_groups(recs, occ), recs.loss, occ.n_periods, occ.weights_or_uniform())
    splt = splt_rows(recs, occ)
    weights = occ.weights_or_uniform()
    if palt is None:
        assert splt.shape[0] == 0
        return
    for row in palt:
        s, t = int(row["SummaryId"]), int(row["SampleType"])
        sel = splt[(splt["SummaryId"] == s) & ((splt["SampleId"] == -1) if t == 1 else (splt["SampleId"] > 0))]
        denom = occ.n_periods * (1 if t == 1 else case.n_samples)
        expected = np.sum(sel["Loss"].astype(np.float64) * weights[sel["Period"] - 1] * occ.n_periods) / denom
        assert row["MeanLoss"] == pytest.approx(expected, rel=1e-5, abs=1e-3)


@given(cases, st.booleans())
@FAST
def test_ep_curves_are_monotone_and_oep_below_aep(case, use_rp):
    occ = _occ(case)
    recs = sort_records(_records(case))
    tables = ept.lec_tables(period_groups(recs, occ), recs.loss, use_rp=use_rp)
    rps = RETURN_PERIODS[::-1].copy() if use_rp else None
    calc = ept.EpCalculator(tables, occ.n_periods, case.n_samples, occ.period_weights, rps,
                            int(recs.summary_id.max()) if len(recs) else 0)
    blocks, _ = ept.ep_blocks(calc, ALL_EP)
    rows = np.concatenate([b.rows for b in blocks]) if blocks else TABLES["ept"].empty()
    weighted = occ.period_weights is not None
    for (s, calc_, etype), grp in pd.DataFrame(rows).groupby(["SummaryId", "EPCalc", "EPType"]):
        grp = grp.sort_values("ReturnPeriod", kind="stable")
        # with period weights the per-sample mean averages each RP over the samples that reach it,
        # which the reference does not keep monotone
        if etype in (ept.OEP, ept.AEP) and not (weighted and calc_ == ept.PERSAMPLEMEAN):
            assert np.all(np.diff(grp["Loss"].to_numpy(np.float64)) >= -1e-3 * grp["Loss"].abs().max()), (s, calc_)
    if weighted:
        return  # OEP and AEP points then sit on different RP grids: interpolation can cross
    df = pd.DataFrame(rows)
    oep = df[df["EPType"] == ept.OEP].set_index(["SummaryId", "EPCalc", "ReturnPeriod"])["Loss"]
    aep = df[df["EPType"] == ept.AEP].set_index(["SummaryId", "EPCalc", "ReturnPeriod"])["Loss"]
    oep, aep = oep[~oep.index.duplicated()], aep[~aep.index.duplicated()]
    both = oep.index.intersection(aep.index)
    assert np.all(oep[both].to_numpy() <= aep[both].to_numpy() * (1 + 1e-6) + 1e-3)


@given(cases)
@FAST
def test_zero_exposure_gives_zero_loss(case):
    case.losses[:] = 0.0
    recs = _records(case)
    assert len(recs) == 0  # all-zero summaries are not written
    recs = summarise(case.event_ids, case.event_ptr, case.ids, case.losses, _maps(case)[0], 3, keep_zeros=True)
    assert not np.any(recs.loss[:, [0, 2]]) and not np.any(recs.loss[:, 3:]) and not np.any(recs.expval)
    assert not np.any(selt_rows(recs, False, keep_zeros=True)["Loss"])
    assert melt_rows(recs).shape[0] == 0 and qelt_rows(recs, QUANTILES).shape[0] == 0


@given(cases, st.booleans(), st.sampled_from(["gul", "il", "ri"]))
@settings(max_examples=4, deadline=None)
def test_merged_outputs_are_byte_identical_for_any_chunking(tmp_path_factory, case, parquet, perspective):
    spec = _spec(case, perspective, parquet=parquet, rp=bool(case.n_periods % 2))
    static = OutputStatic(_occ(case), RETURN_PERIODS, QUANTILES, (case.event_ids[::3], np.full(
        len(case.event_ids[::3]), 0.01, np.float32)))
    root = tmp_path_factory.mktemp("merge")
    outs = [_run_chunks(case, spec, static, n, root / f"n{n}", seed=n) for n in (1, 3, 8)]
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir()) == sorted(p.name for p in outs[2].iterdir())
    for name in names:
        data = [(o / name).read_bytes() for o in outs]
        assert data[0] == data[1] == data[2], name


def test_merge_rejects_an_event_in_two_chunks(tmp_path):
    case = naive.synthetic_case(1, n_events=5)
    spec = _spec(case, tables=("selt",))
    static = OutputStatic(_occ(case), RETURN_PERIODS, QUANTILES)
    for k in range(2):
        accumulate_chunk(spec, static, case.event_ids, case.event_ptr, case.ids, case.losses, tmp_path / f"c{k}")
    with pytest.raises(ValueError, match="more than one chunk"):
        merge_outputs(spec, static, [tmp_path / "c0", tmp_path / "c1"], tmp_path / "out")


def test_accumulate_checks_the_sample_count(tmp_path):
    case = naive.synthetic_case(1, n_events=5)
    spec = _spec(case, tables=("selt",))
    with pytest.raises(ValueError, match="samples"):
        accumulate_chunk(spec, OutputStatic(_occ(case)), case.event_ids, case.event_ptr, case.ids,
                         case.losses[:, :-1], tmp_path)


# ---------------------------------------------------------------------------------------------
# PiWind settings end to end


def _piwind_static(root: Path) -> OutputStatic:
    model = root / "model_data" / "PiWind"
    occ_df = pd.read_csv(model / "occurrence_lt.csv")
    date_opts, n_periods = np.fromfile(model / "occurrence_lt.bin", "<i4", count=2)
    records = np.fromfile(model / "occurrence_lt.bin", "<i4", offset=8).reshape(-1, 3)
    assert date_opts == 1  # days, not granular
    occ = Occurrence.build(occ_df["event_id"], occ_df["period_no"],
                           date_to_occ_date_id(occ_df["occ_year"], occ_df["occ_month"], occ_df["occ_day"]),
                           n_periods=int(n_periods))
    assert occ.occ_date_id.tolist() == records[np.argsort(records[:, 0], kind="stable"), 2].tolist()
    return OutputStatic(occ, pd.read_csv(model / "returnperiods.csv")["return_period"].to_numpy(np.int32),
                        pd.read_csv(model / "quantile.csv")["quantile"].to_numpy(np.float32))


@pytest.mark.reference
def test_piwind_all_outputs_end_to_end(tmp_path):
    root = require_shared("piwind")
    settings_fp = root / "analysis_settings" / "ord_all_outputs_s10.json"
    loc10 = root / "expected-inputs" / "loc10"
    static = _piwind_static(root)
    rng = np.random.default_rng(7)
    events = static.occurrence.event_id[:200]
    for perspective, map_name, col in (("gul", "gul_summary_map.csv", "item_id"),
                                       ("il", "fm_summary_map.csv", "output_id"),
                                       ("ri", "fm_summary_map.csv", "output_id")):
        spec = OutputSpec.from_settings(settings_fp, perspective, loc10 / map_name)
        ids = pd.read_csv(loc10 / map_name)[col].to_numpy(np.int64)
        ptr, all_ids, rows = [0], [], []
        for _ in events:
            hit = rng.choice(ids, rng.integers(0, len(ids) + 1), replace=False)
            all_ids.append(hit)
            loss = rng.gamma(0.5, 5000.0, (len(hit), 15))
            loss[:, 2] = 1e5
            rows.append(loss)
            ptr.append(ptr[-1] + len(hit))
        halves = np.array_split(np.arange(len(events)), 2)
        dirs = []
        for k, half in enumerate(halves):
            a, b = ptr[half[0]], ptr[half[-1] + 1]
            accumulate_chunk(spec, static, events[half], np.array(ptr[half[0]:half[-1] + 2]) - a,
                             np.concatenate(all_ids)[a:b], np.concatenate(rows)[a:b], tmp_path / perspective / str(k))
            dirs.append(tmp_path / perspective / str(k))
        merge_outputs(spec, static, dirs, tmp_path / "output")
    names = {p.name for p in (tmp_path / "output").iterdir()}
    for p in ("gul", "il", "ri"):
        for t in ("selt", "melt", "qelt", "splt", "mplt", "qplt", "palt", "ept", "psept", "summary-info"):
            assert f"{p}_S1_{t}.csv" in names
    ept_df = _read(tmp_path / "output" / "il_S1_ept.csv")
    assert set(ept_df["EPCalc"]) == {1, 2, 3, 4} and set(ept_df["EPType"]) == {1, 2, 3, 4}
    assert set(ept_df["ReturnPeriod"]) <= set(static.return_periods.astype(float))


# ---------------------------------------------------------------------------------------------
# the reference's own tools (opt-in)


def _reference_run(case, ref: Path, perspective, rp, alct, granular):
    bin_ = REFERENCE_VENV / "bin"
    stream = naive.loss_stream_bytes(case, np.argsort(case.event_ids, kind="stable"))
    naive.write_reference_inputs(case, ref / "input", _maps(case)[0], perspective, RETURN_PERIODS, QUANTILES,
                                 granular)
    (ref / "work" / "S1").mkdir(parents=True)
    (ref / "out").mkdir()
    summary = "work/S1/S1_P1.bin"
    p = perspective

    def run(*cmd):
        subprocess.run([str(c) for c in cmd], cwd=ref, check=True, capture_output=True, input=stream)

    run(bin_ / "summarypy", "-t", perspective, "-1", summary)
    run(bin_ / "eltpy", "-i", summary, "-s", f"out/{p}_S1_selt.csv", "-m", f"out/{p}_S1_melt.csv",
        "-q", f"out/{p}_S1_qelt.csv")
    run(bin_ / "pltpy", "-i", summary, "-s", f"out/{p}_S1_splt.csv", "-m", f"out/{p}_S1_mplt.csv",
        "-q", f"out/{p}_S1_qplt.csv")
    run(bin_ / "aalpy", "-K", "S1", "-a", f"out/{p}_S1_palt.csv", *(["-c", f"out/{p}_S1_alct.csv"] if alct else []))
    run(bin_ / "lecpy", "-K", "S1", "-O", f"out/{p}_S1_ept.csv", "-o", f"out/{p}_S1_psept.csv",
        "-F", "-f", "-S", "-s", "-M", "-m", "-W", "-w", *(["-r"] if rp else []))
    return ref / "out"


@pytest.mark.skipif(not (REFERENCE_VENV / "bin" / "summarypy").exists(),
                    reason="opt-in: needs the oasislmf 2.5.8 venv at /tmp/oasis-venv-out (PERILFLOW_OASIS_VENV)")
@pytest.mark.parametrize(
    ("seed", "perspective", "weighted", "rp", "alct", "granular"),
    [(11, "gul", True, True, True, False), (13, "il", False, False, False, True)],
)
def test_same_bytes_as_the_reference(tmp_path, seed, perspective, weighted, rp, alct, granular):
    case = naive.synthetic_case(seed, n_events=150, n_items=20, n_periods=40, weighted=weighted, granular=granular)
    ref_out = _reference_run(case, tmp_path / "ref", perspective, rp, alct, granular)
    spec = _spec(case, perspective, rp=rp, alct=alct)
    static = OutputStatic(_occ(case, granular), RETURN_PERIODS, QUANTILES)
    for n_chunks in (1, 3):
        mine = _run_chunks(case, spec, static, n_chunks, tmp_path / f"mine{n_chunks}", seed=n_chunks)
        for f in sorted(ref_out.iterdir()):
            assert (mine / f.name).read_bytes() == f.read_bytes(), f.name
    shutil.rmtree(tmp_path / "ref", ignore_errors=True)
