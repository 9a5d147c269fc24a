"""GUL input files and the deterministic lookup: rules on small frames, then the reference's files."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.inputs.gul import build_gul_inputs, group_hash, peril_correlation_table, write_gul_inputs
from perilflow.kernel.lookup.deterministic import deterministic_keys, expand_perils
from perilflow.kernel.oed import load_exposure
from tests.conftest import require_shared


def locations(**columns) -> pd.DataFrame:
    base = {"PortNumber": ["P", "P"], "AccNumber": ["A", "A"], "LocNumber": ["1", "2"], "loc_id": [1, 2],
            "LocPerilsCovered": ["WTC", "WW1"], "BuildingTIV": [100.0, 200.0], "OtherTIV": [0.0, 0.0],
            "ContentsTIV": [10.0, 0.0], "BITIV": [0.0, 30.0]}
    base.update(columns)
    return pd.DataFrame(base)


# --------------------------------------------------------------------------- deterministic lookup


def test_deterministic_keys_expand_groups_and_number_covered_perils() -> None:
    keys = deterministic_keys(locations(), ["WTC"])
    assert keys.columns.tolist() == ["loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id"]
    assert keys[["loc_id", "peril_id", "coverage_type"]].values.tolist() == [
        [1, "WTC", 1], [1, "WTC", 2], [1, "WTC", 3], [1, "WTC", 4],
        [2, "WTC", 1], [2, "WTC", 2], [2, "WTC", 3], [2, "WTC", 4]]
    assert keys["area_peril_id"].tolist() == list(range(1, 9)) == keys["vulnerability_id"].tolist()


def test_deterministic_keys_with_errors_and_peril_groups() -> None:
    keys = deterministic_keys(locations(), ["WW2"], with_errors=True)
    # WW1 = WEC, WSS, WTC (sorted within a location); WW2 covers WEC and WTC, not WSS
    loc2 = keys[keys["loc_id"] == 2]
    assert loc2["peril_id"].unique().tolist() == ["WEC", "WSS", "WTC"]
    assert (loc2.loc[loc2["peril_id"] == "WSS", "status"] == "noreturn").all()
    assert (keys.loc[keys["status"] == "noreturn", "area_peril_id"] == -1).all()
    assert keys.loc[keys["status"] == "success", "area_peril_id"].tolist() == list(range(1, 13))
    assert expand_perils(["WW2"]) == ["WEC", "WTC"]


def test_deterministic_keys_reject_unknown_perils() -> None:
    with pytest.raises(ValueError, match="unknown peril code"):
        deterministic_keys(locations(), ["XYZ"])


def test_location_on_several_rows_gets_keys_per_row() -> None:
    frame = pd.concat([locations(), locations().iloc[[0]]], ignore_index=True)
    keys = deterministic_keys(frame, ["WTC"])
    assert keys.loc[keys["loc_id"] == 1, "coverage_type"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]


# --------------------------------------------------------------------------- GUL rules


def test_items_coverages_and_ids() -> None:
    gul = build_gul_inputs(locations(), deterministic_keys(locations(), ["WTC"]))
    frame = gul.frame
    # zero TIVs dropped: loc 1 buildings + contents, loc 2 buildings + BI
    assert frame[["loc_id", "coverage_type_id", "tiv"]].values.tolist() == [
        [1, 1, 100.0], [1, 3, 10.0], [2, 1, 200.0], [2, 4, 30.0]]
    assert frame["item_id"].tolist() == [1, 2, 3, 4] and frame["coverage_id"].tolist() == [1, 2, 3, 4]
    assert frame["areaperil_id"].tolist() == [1, 3, 5, 8]
    assert gul.coverages.values.tolist() == [[1, 100.0], [2, 10.0], [3, 200.0], [4, 30.0]]
    assert (frame["group_id"].iloc[:2] == frame["group_id"].iloc[0]).all()
    assert frame["group_id"].iloc[0] != frame["group_id"].iloc[2]
    assert gul.gul_summary_map.columns.tolist() == [
        "loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id", "tiv",
        "coverage_id", "item_id", "building_id", "layer_id", "agg_id"]


def test_several_perils_share_the_coverage() -> None:
    frame = locations(LocPerilsCovered=["WW2", "WW2"])
    gul = build_gul_inputs(frame, deterministic_keys(frame, ["WW2"]))
    loc1 = gul.frame[gul.frame["loc_id"] == 1]
    assert loc1[["peril_id", "coverage_type_id", "item_id", "coverage_id"]].values.tolist() == [
        ["WEC", 1, 1, 1], ["WEC", 3, 2, 2], ["WTC", 1, 3, 1], ["WTC", 3, 4, 2]]


def test_number_of_buildings_splits_tiv_and_items() -> None:
    frame = locations(NumberOfBuildings=[2, 1], IsAggregate=[1, 0])
    gul = build_gul_inputs(frame, deterministic_keys(frame, ["WTC"]))
    loc1 = gul.frame[gul.frame["loc_id"] == 1]
    assert loc1[["coverage_type_id", "building_id", "risk_id", "tiv", "coverage_id"]].values.tolist() == [
        [1, 1, 1, 50.0, 1], [1, 2, 2, 50.0, 2], [3, 1, 1, 5.0, 3], [3, 2, 2, 5.0, 4]]
    loc2 = gul.frame[gul.frame["loc_id"] == 2]
    assert loc2["risk_id"].tolist() == [1, 1] and loc2["building_id"].tolist() == [1, 1]
    no_split = build_gul_inputs(frame, deterministic_keys(frame, ["WTC"]), do_disaggregation=False)
    assert len(no_split.frame) == 4 and no_split.frame["tiv"].iloc[0] == 100.0


def test_failed_keys_are_dropped() -> None:
    keys = deterministic_keys(locations(), ["WTC"], with_errors=True)
    keys.loc[0, "status"] = "fail"
    gul = build_gul_inputs(locations(), keys)
    assert gul.frame["coverage_type_id"].tolist() == [3, 1, 4]


def test_group_id_is_the_reference_hash() -> None:
    frame = locations()
    gul = build_gul_inputs(frame, deterministic_keys(frame, ["WTC"]))
    table = pd.DataFrame({"accnumber": ["A"], "locnumber": ["1"], "portnumber": ["P"]})
    expected = (pd.util.hash_pandas_object(table, index=False).to_numpy() >> 33).astype(np.uint32)[0]
    assert gul.frame["group_id"].iloc[0] == expected
    categorical = frame.astype({"PortNumber": "category", "AccNumber": "category", "LocNumber": "category"})
    assert group_hash(categorical, ["PortNumber", "AccNumber", "LocNumber"])[0] == expected


def test_correlations_from_model_settings(tmp_path: Path) -> None:
    settings = {"lookup_settings": {"supported_perils": [{"id": "WTC", "peril_correlation_group": 2}]},
                "correlation_settings": [{"peril_correlation_group": 2, "damage_correlation_value": "0.5",
                                          "hazard_correlation_value": "0.1"}]}
    assert peril_correlation_table(settings)[["peril_id", "peril_correlation_group"]].values.tolist() == [["WTC", 2]]
    assert peril_correlation_table({"lookup_settings": settings["lookup_settings"]}) is None
    gul = build_gul_inputs(locations(), deterministic_keys(locations(), ["WTC"]), model_settings=settings)
    assert gul.correlated
    written = write_gul_inputs(gul, tmp_path)
    correlations = pd.read_csv(written["correlations"])
    assert correlations.columns.tolist() == ["item_id", "peril_correlation_group", "damage_correlation_value",
                                             "hazard_group_id", "hazard_correlation_value", "source_item_id"]
    assert correlations["damage_correlation_value"].tolist() == [0.5] * 4
    uncorrelated = build_gul_inputs(locations(), deterministic_keys(locations(), ["WTC"]))
    assert not (gul.frame["group_id"] == uncorrelated.frame["group_id"]).any()


def test_no_positive_tiv_is_a_clear_error() -> None:
    frame = locations(BuildingTIV=[0.0, 0.0], ContentsTIV=[0.0, 0.0], BITIV=[0.0, 0.0])
    with pytest.raises(ValueError, match="positive TIV"):
        build_gul_inputs(frame, deterministic_keys(frame, ["WTC"]))


def test_missing_key_columns_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="keys lack column"):
        build_gul_inputs(locations(), pd.DataFrame({"loc_id": [1], "peril_id": ["WTC"]}))


def test_files_are_written_atomically(tmp_path: Path) -> None:
    gul = build_gul_inputs(locations(), deterministic_keys(locations(), ["WTC"]))
    written = write_gul_inputs(gul, tmp_path / "input")
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == [
        "coverages.csv", "gul_summary_map.csv", "items.csv"]
    items = pd.read_csv(written["items"])
    assert items.columns.tolist() == ["item_id", "coverage_id", "areaperil_id", "vulnerability_id", "group_id"]


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
# insurance_step/expected_subperils is left out: its files predate OED peril codes (PerilID 1, 2) and
# hashed group ids (group_id 1); its losses are checked in test_exposure_run.py.


@functools.cache
def suite_location(suite: str) -> pd.DataFrame:
    folder = require_shared(Path("fm-validation") / suite)
    return load_exposure(folder / "location.csv", allow_duplicate_locations=True).location


def assert_same_csv(got: Path, expected: Path) -> None:
    """Same rows in the same order; columns of the reference compared by name (numbers to rtol 1e-6)."""
    mine, theirs = pd.read_csv(got), pd.read_csv(expected)
    assert len(mine) == len(theirs), f"{expected.name}: {len(mine)} rows, reference {len(theirs)}"
    for column in theirs.columns:
        assert column in mine.columns, f"{expected.name}: no column {column}"
        a, b = mine[column], theirs[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            same = np.isclose(a, b, rtol=1e-6)
        else:
            same = (a.astype(str) == b.astype(str)).to_numpy()
        assert same.all(), f"{expected.name} column {column}: first difference on row {int(np.argmin(same)) + 1}"


@pytest.mark.reference
@pytest.mark.parametrize(("suite", "expected", "peril"), CASES, ids=[f"{s}/{e}" for s, e, _ in CASES])
def test_reference_keys_and_gul_files(suite: str, expected: str, peril: str, tmp_path: Path) -> None:
    folder = require_shared(Path("fm-validation") / suite / expected)
    keys = deterministic_keys(suite_location(suite), [peril])
    reference_keys = pd.read_csv(folder / "keys.csv")
    assert keys.values.tolist() == reference_keys.values.tolist()
    written = write_gul_inputs(build_gul_inputs(suite_location(suite), keys), tmp_path)
    for name in ("items", "coverages", "gul_summary_map"):
        assert_same_csv(written[name], folder / f"{name}.csv")


@pytest.mark.reference
@pytest.mark.parametrize("size", ["loc10", "loc12598"])
def test_piwind_items_with_correlations_match_oasislmf_258(size: str, tmp_path: Path) -> None:
    """PiWind's files written by oasislmf 2.5.8 (correlations on, group ids hashed with the correlation group)."""
    piwind = require_shared("piwind")
    location_file = "SourceLocOEDPiWind10.csv" if size == "loc10" else "SourceLocOEDPiWind.csv"
    location = load_exposure(piwind / "tests/inputs" / location_file).location
    reference = piwind / "expected-inputs" / size
    keys = pd.read_csv(reference / "keys.csv").set_axis(
        ["loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id"], axis=1)
    settings = json.loads((piwind / "meta-data/model_settings.json").read_text())
    written = write_gul_inputs(build_gul_inputs(location, keys, model_settings=settings), tmp_path)
    for name in ("items", "coverages", "gul_summary_map", "correlations"):
        assert_same_csv(written[name], reference / f"{name}.csv")
    assert pd.read_csv(written["gul_summary_map"]).columns.tolist() == \
        pd.read_csv(reference / "gul_summary_map.csv").columns.tolist()
