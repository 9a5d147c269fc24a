"""IL (FM) input files: small programmes checked by hand, then every reference file of the validation suites."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.fm.run import fm_run
from perilflow.kernel.inputs.gul import build_gul_inputs, write_gul_inputs
from perilflow.kernel.inputs.il import FmTermsError, build_il_inputs, calc_rules, prepare_account, write_il_inputs
from perilflow.kernel.lookup.deterministic import deterministic_keys
from perilflow.kernel.oed import load_exposure
from tests.conftest import require_shared


def location(**columns) -> pd.DataFrame:
    base = {"PortNumber": ["P"], "AccNumber": ["A"], "LocNumber": ["1"], "loc_id": [1], "LocPerilsCovered": ["WTC"],
            "BuildingTIV": [100.0], "ContentsTIV": [10.0], "BITIV": [0.0]}
    base.update(columns)
    return pd.DataFrame(base)


def account(rows: int = 1, **columns) -> pd.DataFrame:
    base = {"PortNumber": ["P"] * rows, "AccNumber": ["A"] * rows, "PolNumber": ["Pol"] * rows,
            "PolPerilsCovered": ["AA1"] * rows}
    base.update(columns)
    return pd.DataFrame(base)


def build(loc: pd.DataFrame, acc: pd.DataFrame):
    gul = build_gul_inputs(loc, deterministic_keys(loc, ["WTC"]))
    return build_il_inputs(gul, loc, acc)


def rows(frame: pd.DataFrame) -> list[list]:
    return frame.values.tolist()


def test_site_deductible_then_pass_through_policy_layer() -> None:
    il = build(location(LocDed6All=[5.0]), account())
    assert rows(il.fm_programme) == [[1, 1, 1], [2, 1, 1], [1, 2, 1]]
    assert rows(il.fm_policytc) == [[1, 1, 1, 2], [2, 1, 1, 1]]
    assert il.fm_profile[["profile_id", "calcrule_id", "deductible1"]].values.tolist() == [[1, 100, 0], [2, 12, 5]]
    assert rows(il.fm_xref) == [[1, 1, 1], [2, 2, 1]]
    assert il.fm_summary_map["PolNumber"].tolist() == ["Pol", "Pol"]
    assert il.fm_summary_map["acc_idx"].tolist() == [0, 0]


def test_only_levels_with_terms_are_written_and_numbered_consecutively() -> None:
    il = build(location(LocDed1Building=[3.0]), account(PolDed6All=[7.0]))
    # site coverage (1), policy all (2), policy layer (3): site pd/all, conditions, policy coverage skipped
    assert sorted(il.fm_policytc["level_id"].unique()) == [1, 2, 3]
    level1 = il.fm_policytc[il.fm_policytc["level_id"] == 1]
    assert level1["profile_id"].tolist() == [2, 1]  # buildings carry the deductible, contents pass through
    profiles = il.fm_profile.set_index("profile_id")
    assert profiles.loc[2, "deductible1"] == 3 and profiles.loc[3, "deductible1"] == 7


def test_percent_of_tiv_deductible_uses_the_node_tiv() -> None:
    il = build(location(LocDed6All=[0.1], LocDedType6All=[2]), account())
    assert il.fm_profile.loc[il.fm_profile["profile_id"] == 2, ["calcrule_id", "deductible1"]].values.tolist() == [
        [12, pytest.approx(11.0)]]


def test_bi_waiting_period_and_period_of_interest_in_days() -> None:
    il = build(location(BITIV=[365.0], BIWaitingPeriod=[10.0], BIPOI=[180.0]), account())
    bi_profile = il.fm_profile[il.fm_profile["calcrule_id"] != 100]
    # days x BITIV / 365: waiting period 10, period of interest 180 (calcrule 40)
    assert bi_profile[["calcrule_id", "deductible1", "limit1"]].values.tolist() == [
        [40, pytest.approx(10.0), pytest.approx(180.0)]]
    assert sorted(il.fm_policytc["level_id"].unique()) == [1, 2]  # site item level, then policy layer


def test_waiting_period_without_period_of_interest_has_no_calcrule() -> None:
    """As in the reference, whose calcrule table has no rule for it."""
    with pytest.raises(FmTermsError, match="no calcrule"):
        build(location(BITIV=[365.0], BIWaitingPeriod=[10.0]), account())


def test_two_layers_give_two_outputs_per_item() -> None:
    acc = account(2, LayerNumber=[1, 2], LayerLimit=[50.0, 100.0], LayerAttachment=[0.0, 50.0])
    il = build(location(), acc)
    assert rows(il.fm_xref) == [[1, 1, 1], [2, 1, 2], [3, 2, 1], [4, 2, 2]]
    layer_level = il.fm_policytc[il.fm_policytc["level_id"] == il.fm_policytc["level_id"].max()]
    assert layer_level[["layer_id", "profile_id"]].values.tolist() == [[1, 2], [2, 3]]
    terms = il.fm_profile.set_index("profile_id")
    assert terms.loc[2, "calcrule_id"] == 2 and terms.loc[2, "limit1"] == 50 and terms.loc[2, "share1"] == 1
    assert terms.loc[3, "attachment1"] == 50


def test_no_terms_at_all_is_one_pass_through_level() -> None:
    il = build(location(), account())
    assert rows(il.fm_programme) == [[1, 1, 1], [2, 1, 1]]
    assert il.fm_profile["calcrule_id"].tolist() == [100]


def test_conflicting_terms_for_one_node_are_rejected() -> None:
    acc = account(2, PolDed6All=[10.0, 20.0])
    with pytest.raises(FmTermsError, match="layer 1 of .*'AccNumber': 'A'.* gets 2 different sets of terms"):
        build(location(), acc)
    acc = account(2, PolDed6All=[10.0, 20.0], PolPeril=["WTC", "WTC;WSS"])
    with pytest.raises(FmTermsError, match="different terms to the same node"):
        build(location(), acc)


def test_prepare_account_numbers_layers_per_account() -> None:
    acc = prepare_account(pd.DataFrame({"PortNumber": ["P"] * 3, "AccNumber": ["A", "A", "B"],
                                        "PolNumber": ["1", "2", "1"], "LayerNumber": [1, None, 1]}))
    assert acc[["acc_idx", "LayerNumber", "layer_id"]].values.tolist() == [[0, 1, 1], [1, 1, 2], [2, 1, 1]]


def test_calc_rule_tables_are_the_reference_tables() -> None:
    assert set(calc_rules("base")["calcrule_id"]) >= {1, 3, 5, 12, 14, 16, 100}
    assert calc_rules("policy_layer").shape == (8, 4)
    assert "desc" not in calc_rules("step").columns


def test_files_written(tmp_path: Path) -> None:
    il = build(location(LocDed6All=[5.0]), account())
    written = write_il_inputs(il, tmp_path)
    assert sorted(written) == ["fm_policytc", "fm_profile", "fm_programme", "fm_summary_map", "fm_xref"]
    assert pd.read_csv(written["fm_summary_map"]).columns.tolist() == [
        "loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id", "tiv",
        "coverage_id", "agg_id", "building_id", "risk_id", "layer_id", "PolNumber", "output_id", "acc_idx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- reference files

CASES = [
    ("insurance", "expected", "WTC"), ("insurance", "expected_subperils", "WW2"),
    ("insurance_account", "expected", "WTC"),
    ("insurance_and_step", "expected", "WTC"), ("insurance_and_step", "expected_subperils", "WW2"),
    ("insurance_bi", "expected", "WTC"), ("insurance_bi", "expected_subperils", "WW2"),
    ("insurance_conditions", "expected", "WTC"), ("insurance_conditions", "expected_subperils", "WW2"),
    ("insurance_policy_coverage", "expected", "WTC"), ("insurance_policy_coverage", "expected_subperils", "WW2"),
    ("insurance_step", "expected", "WTC"),
    ("issue_1816", "expected", "WTC"), ("issue_1953_layerparticipation", "expected", "WTC"),
    ("issues", "expected", "WTC"), ("issues", "expected_subperils", "WW2"),
    ("reinsurance1", "expected", "WTC"), ("reinsurance1", "expected_subperils", "WW2"),
    ("reinsurance2", "expected", "WTC"), ("reinsurance2", "expected_subperils", "WW2"),
    ("reinsurance3", "expected", "WTC"), ("reinsurance4", "expected", "WTC"),
]
# insurance_step/expected_subperils predates OED peril codes and the current FM layout (fm_summary_map
# columns in lower case); its losses are checked against insurance_and_step in test_exposure_run.py.
FM_FILES = ("fm_programme", "fm_policytc", "fm_profile", "fm_xref", "fm_summary_map")


@functools.cache
def suite_exposure(suite: str):
    folder = require_shared(Path("fm-validation") / suite)
    return load_exposure(folder / "location.csv", folder / "account.csv", allow_duplicate_locations=True)


def assert_same_csv(got: Path, expected: Path) -> None:
    """Same rows in the same order; the reference's columns compared by name (numbers to rtol 1e-6).

    ``acc_idx`` is left out as the reference's own test does (it depends on pandas' merge order).
    """
    mine, theirs = pd.read_csv(got), pd.read_csv(expected)
    assert len(mine) == len(theirs), f"{expected.name}: {len(mine)} rows, reference {len(theirs)}"
    for column in theirs.columns.drop("acc_idx", errors="ignore"):
        assert column in mine.columns, f"{expected.name}: no column {column}"
        a, b = mine[column], theirs[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            same = np.isclose(a, b, rtol=1e-6)
        else:
            same = (a.astype(str) == b.astype(str)).to_numpy()
        assert same.all(), f"{expected.name} column {column}: first difference on row {int(np.argmin(same)) + 1}"


@pytest.mark.reference
@pytest.mark.parametrize(("suite", "expected", "peril"), CASES, ids=[f"{s}/{e}" for s, e, _ in CASES])
def test_reference_fm_files_and_their_losses(suite: str, expected: str, peril: str, tmp_path: Path) -> None:
    """The generated FM files equal the reference's, and fm_run gives the same losses on both."""
    folder = require_shared(Path("fm-validation") / suite / expected)
    exposure = suite_exposure(suite)
    gul = build_gul_inputs(exposure.location, deterministic_keys(exposure.location, [peril]))
    il = build_il_inputs(gul, exposure.location, exposure.account)
    write_gul_inputs(gul, tmp_path / "input")
    written = write_il_inputs(il, tmp_path / "input")
    for name in FM_FILES:
        assert_same_csv(written[name], folder / f"{name}.csv")

    factors_file = folder.parent / "loss_factors.csv"
    factors = pd.read_csv(factors_file)["loss_factor"].tolist() if factors_file.exists() else [1.0]
    mine = fm_run(tmp_path / "input", tmp_path / "mine", factors, with_ri=False)
    theirs = fm_run(folder, tmp_path / "theirs", factors, with_ri=False)
    pd.testing.assert_frame_equal(pd.read_csv(mine["ils"]), pd.read_csv(theirs["ils"]))


@pytest.mark.reference
@pytest.mark.parametrize("size", ["loc10", "loc12598"])
def test_piwind_fm_files_match_oasislmf_258(size: str, tmp_path: Path) -> None:
    """PiWind's FM files written by oasislmf 2.5.8, fm_summary_map column order included."""
    piwind = require_shared("piwind")
    location_file = "SourceLocOEDPiWind10.csv" if size == "loc10" else "SourceLocOEDPiWind.csv"
    exposure = load_exposure(piwind / "tests/inputs" / location_file, piwind / "tests/inputs/SourceAccOEDPiWind.csv")
    reference = piwind / "expected-inputs" / size
    keys = pd.read_csv(reference / "keys.csv").set_axis(
        ["loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id"], axis=1)
    il = build_il_inputs(build_gul_inputs(exposure.location, keys), exposure.location, exposure.account)
    written = write_il_inputs(il, tmp_path)
    for name in FM_FILES:
        assert_same_csv(written[name], reference / f"{name}.csv")
    assert pd.read_csv(written["fm_summary_map"]).columns.tolist() == \
        pd.read_csv(reference / "fm_summary_map.csv").columns.tolist()
