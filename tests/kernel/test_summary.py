"""Summaries: the summarise kernel against its naive twin, the summary xref and the settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.outputs import OutputSpec, build_summary_xref, load_analysis_settings, summarise
from perilflow.kernel.outputs.settings import SummarySetSettings, read_summary_map, risk_index
from tests.conftest import require_shared
from tests.kernel.naive_outputs import naive_summarise, synthetic_case

REFERENCE_VENV = Path(os.environ.get("PERILFLOW_OASIS_VENV", "/tmp/oasis-venv-out"))


def _case_maps(case):
    n = len(case.item_loc)
    id_to_summary = np.zeros(n + 1, np.int32)
    id_to_summary[1:] = case.item_group + 1
    risks = pd.factorize(pd.Series(list(zip(case.item_loc, case.item_building, strict=True)), dtype=object))[0]
    return id_to_summary, np.concatenate([[0], risks]).astype(np.int32)


def _as_tuples(recs):
    return [(int(e), int(s), np.float32(x).tobytes(), row.tobytes())
            for e, s, x, row in zip(recs.event_id, recs.summary_id, recs.expval, recs.loss, strict=True)]


def _naive_tuples(rows):
    return [(e, s, np.float32(x).tobytes(), np.array(loss, np.float32).tobytes()) for e, s, x, loss in rows]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_risk", [True, False])
@pytest.mark.parametrize("keep_zeros", [False, True])
def test_summarise_matches_naive(seed, with_risk, keep_zeros):
    case = synthetic_case(seed, n_events=25)
    id_to_summary, id_to_risk = _case_maps(case)
    risk = id_to_risk if with_risk else None
    recs = summarise(case.event_ids, case.event_ptr, case.ids, case.losses, id_to_summary,
                     int(id_to_summary.max()), risk, keep_zeros)
    expected = naive_summarise(case.event_ids, case.event_ptr, case.ids, case.losses, id_to_summary, risk, keep_zeros)
    assert _as_tuples(recs) == _naive_tuples(expected)


def test_summarise_sorts_events_and_treats_nan_as_zero():
    ids = np.array([1, 2, 1], np.int64)
    losses = np.zeros((3, 7))
    losses[:, 2] = 100.0  # TIV
    losses[:, 4] = [1.0, np.nan, 2.0]  # mean
    losses[:, 5] = [5.0, 7.0, np.nan]
    recs = summarise(np.array([9, 3], np.int32), np.array([0, 2, 3]), ids, losses,
                     np.array([0, 1, 1], np.int32), 1, np.array([0, 0, 1], np.int32))
    assert recs.event_id.tolist() == [3, 9]
    assert recs.loss[:, 2].tolist() == [2.0, 1.0]  # the NaN mean of item 2 counted as 0
    assert recs.loss[:, 3].tolist() == [0.0, 12.0]
    assert recs.loss[:, 1].tolist() == [1.0, 2.0]  # event 9 hits risks 0 and 1
    assert recs.expval.tolist() == [100.0, 200.0]


def test_risk_count_follows_the_reference_rule():
    # items 1 and 2 are the same risk but feed different summaries; item 3 is another risk in summary 2.
    # Summary 2 first sees item 2 (counts 1), then item 3 (new risk: +1); summary 1 sees item 1 first (1).
    ids = np.array([1, 2, 3], np.int64)
    losses = np.ones((3, 6))
    id_to_summary = np.array([0, 1, 2, 2], np.int32)
    id_to_risk = np.array([0, 0, 0, 1], np.int32)
    recs = summarise(np.array([1], np.int32), np.array([0, 3]), ids, losses, id_to_summary, 2, id_to_risk)
    assert recs.loss[:, 1].tolist() == [1.0, 2.0]
    # a later record of an already-hit risk in a summary seen before adds nothing
    ids = np.array([3, 2, 1], np.int64)
    recs = summarise(np.array([1], np.int32), np.array([0, 3]), ids, losses, id_to_summary, 2, id_to_risk)
    assert recs.loss[:, 1].tolist() == [1.0, 2.0]


def test_zero_summaries_are_dropped_unless_kept():
    losses = np.zeros((2, 7))
    args = (np.array([1, 2], np.int32), np.array([0, 1, 2]), np.array([1, 1]), losses, np.array([0, 1], np.int32), 1)
    assert len(summarise(*args)) == 0
    assert len(summarise(*args, keep_zeros=True)) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event_ptr": np.array([0, 1])}, "one more entry"),
        ({"ids": np.array([1, 5])}, "ids outside"),
        ({"ids": np.array([1, 2])}, "no summary id"),
        ({"event_ids": np.array([4, 4], np.int32)}, "unique"),
        ({"losses": np.zeros((2, 3))}, "float64"),
        ({"event_ptr": np.array([0, 2, 1])}, "non-decreasing"),
    ],
)
def test_summarise_rejects_bad_input(kwargs, message):
    args = {"event_ids": np.array([1, 2], np.int32), "event_ptr": np.array([0, 1, 2]), "ids": np.array([1, 1]),
            "losses": np.zeros((2, 6)), "id_to_summary": np.array([0, 1, 0], np.int32), "n_summaries": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        summarise(**args)


# ---------------------------------------------------------------------------------------------
# summary xref


def _small_map():
    return pd.DataFrame({
        "loc_id": [1, 1, 2, 2, 3, 3],
        "item_id": [6, 5, 4, 3, 2, 1],
        "building_id": [1, 1, 1, 2, 1, 1],
        "coverage_type_id": [1, 3, 1, 1, 1, 2],
        "tiv": [10.0, 1.0, 20.0, 30.0, 40.0, 4.0],
        "LocNumber": ["L1", "L1", "L2", "L2", "L3", "L3"],
        "CountryCode": ["GB", "GB", "FR", np.nan, "GB", "GB"],
        "acc_idx": [0, 0, 0, 0, 1, 1],
    })


def _naive_first_appearance(df, id_col, fields):
    df = df.sort_values(id_col, kind="stable")
    seen: dict = {}
    out = {}
    for _, row in df.iterrows():
        key = tuple("0" if pd.isna(row[f]) else row[f] for f in fields)
        seen.setdefault(key, len(seen) + 1)
        out[int(row[id_col])] = seen[key]
    return out


@pytest.mark.parametrize("fields", [("LocNumber",), ("CountryCode",), ("CountryCode", "LocNumber"),
                                    ("coverage_type_id",)])
def test_xref_numbers_groups_by_first_appearance(fields):
    df = _small_map()
    x = build_summary_xref(df, SummarySetSettings(2, fields), "item_id")
    expected = _naive_first_appearance(df, "item_id", fields)
    assert {i: int(x.id_to_summary[i]) for i in expected} == expected
    assert x.n_summaries == len(set(expected.values()))
    assert list(x.info.columns) == ["summary_id", *fields, "tiv"]
    assert x.info["tiv"].sum() == pytest.approx(df["tiv"].sum())


def test_xref_all_risks_and_property_damage():
    df = _small_map()
    x = build_summary_xref(df, SummarySetSettings(1), "item_id")
    assert set(x.id_to_summary[1:]) == {1}
    assert x.info.to_dict("list") == {"summary_id": [1], "_not_set_": ["All-Risks"], "tiv": [105.0]}
    x = build_summary_xref(df, SummarySetSettings(1, ("is_property_damage",)), "item_id")
    assert x.id_to_summary[1:].tolist() == [1, 1, 1, 1, 2, 1]


def test_xref_reads_missing_fields_from_exposure():
    df = _small_map()
    loc = pd.DataFrame({"loc_id": [1, 2, 3], "OccupancyCode": [1050, 1100, 1050]})
    acc = pd.DataFrame({"acc_idx": [0, 1], "PolNumber": ["P1", "P2"]})
    x = build_summary_xref(df, SummarySetSettings(1, ("OccupancyCode", "PolNumber")), "item_id", loc, acc)
    assert x.id_to_summary[1:].tolist() == [1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="neither in the summary map"):
        build_summary_xref(df, SummarySetSettings(1, ("NoSuchField",)), "item_id")


def test_risk_index_is_first_appearance_of_location_building():
    assert risk_index(_small_map(), "item_id").tolist() == [0, 3, 3, 2, 1, 0, 0]


# ---------------------------------------------------------------------------------------------
# settings


def _settings(**ord_output):
    return {"version": "3", "model_supplier_id": "x", "model_name_id": "y", "number_of_samples": 4,
            "model_settings": {},
            "gul_output": True, "gul_summaries": [{"id": 1, "ord_output": ord_output}]}


def test_settings_validation_names_the_field():
    bad = _settings(elt_sample="yes")
    with pytest.raises(ValueError, match="elt_sample"):
        load_analysis_settings(bad)
    bad = _settings()
    bad["gul_summaries"].append({"id": 1})
    with pytest.raises(ValueError, match="duplicated"):
        load_analysis_settings(bad)


def test_summary_set_settings_flags():
    s = SummarySetSettings.from_dict({"id": 3, "oed_fields": "LocNumber", "ord_output": {
        "elt_sample": True, "plt_moment": True, "alct_convergence": True, "ept_per_sample_mean_oep": True,
        "psept_aep": True, "parquet_format": True}})
    assert s.oed_fields == ("LocNumber",)
    assert s.tables == ("selt", "mplt")
    assert not s.alct  # ALCT needs alt_period, as in the reference
    assert s.ep.per_sample_mean_oep and s.ep.psept_aep and not s.ep.full_uncertainty_aep
    assert s.parquet and s.needs_periods
    with pytest.raises(ValueError, match="1 to 9"):
        SummarySetSettings.from_dict({"id": 10})


def test_spec_from_settings_small(tmp_path):
    fp = tmp_path / "gul_summary_map.csv"
    _small_map().to_csv(fp, index=False)
    spec = OutputSpec.from_settings(_settings(elt_sample=True), "gul", fp)
    assert spec.enabled and spec.n_samples == 4 and spec.id_to_risk is not None
    assert spec.sets[0].settings.tables == ("selt",)
    assert not OutputSpec.from_settings(_settings(elt_sample=True), "il", fp).enabled


@pytest.mark.reference
def test_piwind_settings_and_maps():
    root = require_shared("piwind")
    settings = root / "analysis_settings" / "ord_all_outputs_s10.json"
    loc10 = root / "expected-inputs" / "loc10"
    gul = OutputSpec.from_settings(settings, "gul", loc10 / "gul_summary_map.csv",
                                   xref_map=loc10 / "fm_summary_map.csv")
    il = OutputSpec.from_settings(settings, "il", loc10 / "fm_summary_map.csv")
    ri = OutputSpec.from_settings(settings, "ri", loc10 / "fm_summary_map.csv")
    assert gul.n_samples == 10 and ri.id_to_risk is None
    for spec in (gul, il, ri):
        (s,) = spec.sets
        assert s.settings.tables == ("selt", "melt", "qelt", "splt", "mplt", "qplt")
        assert s.settings.alt_period and s.settings.ep.any_ept and s.settings.ep.any_psept
        assert s.xref.n_summaries == 1
    fm = read_summary_map(loc10 / "fm_summary_map.csv")
    assert gul.sets[0].xref.info["tiv"].iloc[0] == pytest.approx(fm.drop_duplicates(
        ["loc_id", "building_id", "coverage_type_id"])["tiv"].sum())


_REF_XREF = """
import json, sys
import pandas as pd
from oasislmf.preparation.summaries import get_summary_xref_df, MAP_SUMMARY_DTYPES
fp, id_col, fields_json, out = sys.argv[1:]
m = pd.read_csv(fp, dtype={"PortNumber": str, "AccNumber": str, "LocNumber": str, "PolNumber": str})
loc = m[["loc_id", "PortNumber", "AccNumber", "LocNumber"]].drop_duplicates("loc_id")
acc = m[["acc_idx", "PolNumber"]].drop_duplicates("acc_idx")
keep = m[[c for c in m.columns if c in MAP_SUMMARY_DTYPES]].copy()
sets = [{"id": i + 1, "oed_fields": f} for i, f in enumerate(json.loads(fields_json))]
xref, desc = get_summary_xref_df(keep, loc, acc, sets, "il", id_col)
xref.to_csv(out, index=False)
for k, v in desc.items():
    v.to_csv(out + "." + k, index=False)
"""


@pytest.mark.reference
@pytest.mark.skipif(not (REFERENCE_VENV / "bin" / "python").exists(),
                    reason="opt-in: needs the oasislmf 2.5.8 venv at /tmp/oasis-venv-out (PERILFLOW_OASIS_VENV)")
def test_piwind_xref_matches_reference(tmp_path):
    loc10 = require_shared("piwind") / "expected-inputs" / "loc10"
    field_sets = [[], ["LocNumber"], ["PolNumber"], ["PolNumber", "LocNumber"], ["coverage_type_id", "AccNumber"]]
    out = tmp_path / "xref.csv"
    subprocess.run([str(REFERENCE_VENV / "bin" / "python"), "-c", _REF_XREF, str(loc10 / "fm_summary_map.csv"),
                    "output_id", json.dumps(field_sets), str(out)], check=True, capture_output=True)
    ref = pd.read_csv(out)
    fm = read_summary_map(loc10 / "fm_summary_map.csv")
    for i, fields in enumerate(field_sets, start=1):
        x = build_summary_xref(fm, SummarySetSettings(i, tuple(fields)), "output_id")
        r = ref[ref["summaryset_id"] == i]
        assert dict(zip(r["output"], r["summary_id"], strict=True)) == {
            int(o): int(x.id_to_summary[o]) for o in r["output"]}
        info_ref = pd.read_csv(str(out) + f".il_S{i}_summary-info.csv", dtype=str)
        buf = tmp_path / f"mine{i}.csv"
        x.info.to_csv(buf, index=False)
        assert pd.read_csv(buf, dtype=str).equals(info_ref)
