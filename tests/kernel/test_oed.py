"""OED exposure in: loading through ods-tools, the reference's loc_id, and the checks that name file/row/column/fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.oed import OedValidationError, Problem, load_exposure, location_ids
from perilflow.kernel.oed.exposure import oed_schema, read_raw
from perilflow.kernel.oed.validation import validate_exposure
from tests.conftest import require_shared

LOCATION = pd.DataFrame({
    "PortNumber": ["P1", "P1", "P1", "P2"],
    "AccNumber": ["A1", "A1", "A2", "A1"],
    "LocNumber": ["10", "2", "1", "1"],
    "CountryCode": ["GB"] * 4,
    "LocPerilsCovered": ["WW1", "WTC;WSS", "AA1", "WTC"],
    "LocCurrency": ["GBP"] * 4,
    "BuildingTIV": ["1000", "2000", "0", "500"],
    "ContentsTIV": ["100", "", "50", "0"],
    "NumberOfBuildings": ["1", "2", "", "1"],
    "LocDed6All": ["10", "0", "0", "0"],
})
ACCOUNT = pd.DataFrame({
    "PortNumber": ["P1", "P1", "P2"],
    "AccNumber": ["A1", "A2", "A1"],
    "PolNumber": ["Pol1", "Pol2", "Pol3"],
    "PolPerilsCovered": ["AA1", "AA1", "WTC"],
    "AccCurrency": ["GBP"] * 3,
    "LayerLimit": ["1000000", "", "50000"],
})


def write(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def fatal_problems(excinfo) -> list[Problem]:
    return [p for p in excinfo.value.problems if p.fatal]


def test_loads_typed_frames_with_oed_names_and_loc_id(tmp_path: Path) -> None:
    exposure = load_exposure(write(tmp_path, "location.csv", LOCATION), write(tmp_path, "account.csv", ACCOUNT))
    location = exposure.location
    assert list(location.columns[:3]) == ["PortNumber", "AccNumber", "LocNumber"]
    assert location["BuildingTIV"].dtype == np.float64
    assert isinstance(location["PortNumber"].dtype, pd.CategoricalDtype)
    # sorted as text by (PortNumber, AccNumber, LocNumber): P1/A1/10 < P1/A1/2 < P1/A2/1 < P2/A1/1
    assert location["loc_id"].tolist() == [1, 2, 3, 4]
    assert exposure.account is not None and len(exposure.account) == 3
    assert exposure.ri_info is None and exposure.warnings == []


def test_location_ids_number_distinct_triples_in_text_order() -> None:
    frame = pd.DataFrame({"PortNumber": ["1", "1", "1", "1"], "AccNumber": ["A", "A", "A", "A"],
                          "LocNumber": ["10002082049", "10002082046", "10002082046", "9"]})
    assert location_ids(frame).tolist() == [2, 1, 1, 3]


def test_csv_and_parquet_give_the_same_frames(tmp_path: Path) -> None:
    from_csv = load_exposure(write(tmp_path, "location.csv", LOCATION), write(tmp_path, "account.csv", ACCOUNT))
    LOCATION.to_parquet(tmp_path / "location.parquet")
    ACCOUNT.to_parquet(tmp_path / "account.parquet")
    from_parquet = load_exposure(tmp_path / "location.parquet", tmp_path / "account.parquet")
    pd.testing.assert_frame_equal(from_csv.location, from_parquet.location)
    pd.testing.assert_frame_equal(from_csv.account, from_parquet.account)


def test_dataframes_are_accepted_as_input(tmp_path: Path) -> None:
    from_csv = load_exposure(write(tmp_path, "location.csv", LOCATION), write(tmp_path, "account.csv", ACCOUNT))
    from_frames = load_exposure(LOCATION, ACCOUNT)
    pd.testing.assert_frame_equal(from_csv.location, from_frames.location)


# --------------------------------------------------------------------------- the five fatal problems


def test_missing_required_column_is_fatal(tmp_path: Path) -> None:
    path = write(tmp_path, "location.csv", LOCATION.drop(columns=["LocPerilsCovered"]))
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(path, write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert problem.file == str(path) and problem.column == "LocPerilsCovered" and problem.row is None
    assert "required column 'LocPerilsCovered' is missing" in str(excinfo.value)
    assert "Fix: add a 'LocPerilsCovered' column" in str(excinfo.value)


def test_unknown_peril_code_is_fatal_and_names_the_row(tmp_path: Path) -> None:
    location = LOCATION.copy()
    location.loc[2, "LocPerilsCovered"] = "WTC;XYZ"
    path = write(tmp_path, "location.csv", location)
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(path, write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (3, "LocPerilsCovered")
    assert "'XYZ'" in problem.message
    assert f"{path}, row 3 (line 4), column 'LocPerilsCovered'" in str(problem)
    assert "Fix: use OED peril codes" in str(problem)


def test_text_in_a_numeric_column_is_fatal(tmp_path: Path) -> None:
    location = LOCATION.copy()
    location.loc[1, "BuildingTIV"] = "2,000 GBP"
    path = write(tmp_path, "location.csv", location)
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(path, write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (2, "BuildingTIV")
    assert "'2,000 GBP' is not a number" in problem.message
    assert "write a plain number" in problem.fix


def test_fraction_in_an_integer_column_is_fatal(tmp_path: Path) -> None:
    location = LOCATION.copy()
    location.loc[0, "NumberOfBuildings"] = "1.5"
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (1, "NumberOfBuildings") and "whole number" in problem.message


def test_duplicate_locnumber_within_an_account_is_fatal(tmp_path: Path) -> None:
    location = pd.concat([LOCATION, LOCATION.iloc[[1]].assign(BuildingTIV="9999")], ignore_index=True)
    path = write(tmp_path, "location.csv", location)
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(path, write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (5, "LocNumber")
    assert "LocNumber '2' appears again in account 'A1' of portfolio 'P1' (first on row 2)" in problem.message
    assert "BuildingTIV" in problem.message
    # the reference accepts it (first row wins): allowed on request, as a warning
    exposure = load_exposure(path, write(tmp_path, "account.csv", ACCOUNT), allow_duplicate_locations=True)
    assert [p.row for p in exposure.warnings] == [5] and not exposure.warnings[0].fatal


def test_location_repeated_only_for_more_terms_is_a_warning(tmp_path: Path) -> None:
    """One row per CondTag (or LocPeril) is how OED gives a location several conditions."""
    location = LOCATION.assign(CondTag="")
    location = pd.concat([location, location.iloc[[0]].assign(CondTag="C1", LocDed6All="50")], ignore_index=True)
    account = pd.concat([ACCOUNT, ACCOUNT.iloc[[0]]], ignore_index=True).assign(
        CondTag=["", "", "", "C1"], CondNumber=["", "", "", "1"], CondDed6All=["0", "0", "0", "100"])
    exposure = load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", account))
    assert [(p.row, p.fatal) for p in exposure.warnings] == [(5, False)]
    assert exposure.location["loc_id"].tolist() == [1, 2, 3, 4, 1]


def test_empty_file_is_fatal(tmp_path: Path) -> None:
    header_only = tmp_path / "location.csv"
    LOCATION.iloc[:0].to_csv(header_only, index=False)
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(header_only, write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert "no data rows" in problem.message and problem.file == str(header_only)
    nothing = tmp_path / "empty.csv"
    nothing.write_text("")
    with pytest.raises(OedValidationError, match="the file is empty"):
        load_exposure(nothing, write(tmp_path, "account.csv", ACCOUNT))


# --------------------------------------------------------------------------- other checks


def test_location_of_an_unknown_account_is_fatal(tmp_path: Path) -> None:
    location = LOCATION.copy()
    location.loc[3, "AccNumber"] = "A9"
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", ACCOUNT))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (4, "AccNumber") and "'A9'" in problem.message


def test_undefined_condtag_is_fatal(tmp_path: Path) -> None:
    location = LOCATION.assign(CondTag=["", "C7", "", ""])
    account = ACCOUNT.assign(CondTag=["C1", "", ""], CondNumber=["1", "", ""])
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", account))
    [problem] = fatal_problems(excinfo)
    assert (problem.row, problem.column) == (2, "CondTag") and "'C7'" in problem.message


def test_out_of_range_value_is_only_a_warning(tmp_path: Path) -> None:
    location = LOCATION.copy()
    location.loc[0, "ContentsTIV"] = "-5"
    exposure = load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", ACCOUNT))
    [warning] = exposure.warnings
    assert (warning.row, warning.column, warning.fatal) == (1, "ContentsTIV", False)
    assert "warning: -5 is outside the valid range" in str(warning)


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    location = pd.concat([LOCATION] * 5, ignore_index=True)
    location["LocNumber"] = [str(i) for i in range(len(location))]
    location["BuildingTIV"] = "n/a"
    raw, label = read_raw(write(tmp_path, "location.csv", location))
    problems = validate_exposure({"location": (raw, label)}, oed_schema())
    assert [p.row for p in problems] == [1, 2, 3, 4, 5, None]
    assert "15 more rows have the same problem" in problems[-1].message


def test_error_lists_every_fatal_problem_and_pickles(tmp_path: Path) -> None:
    import pickle

    location = LOCATION.drop(columns=["CountryCode"])
    location.loc[0, "LocPerilsCovered"] = "ZZZ"
    with pytest.raises(OedValidationError) as excinfo:
        load_exposure(write(tmp_path, "location.csv", location), write(tmp_path, "account.csv", ACCOUNT))
    assert str(excinfo.value).startswith("2 problem(s) stop the OED exposure from being used:")
    again = pickle.loads(pickle.dumps(excinfo.value))
    assert isinstance(again, ValueError) and again.problems == excinfo.value.problems


def test_missing_file_is_a_clear_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OED file not found"):
        load_exposure(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- reference data

SUITES = ["insurance", "insurance_account", "insurance_and_step", "insurance_bi", "insurance_conditions",
          "insurance_policy_coverage", "insurance_step", "issue_1816", "issue_1953_layerparticipation", "issues",
          "reinsurance1", "reinsurance2", "reinsurance3", "reinsurance4"]


@pytest.mark.reference
@pytest.mark.parametrize("suite", SUITES)
def test_validation_suite_loads_and_loc_id_matches_reference(suite: str) -> None:
    """Every suite passes the checks (insurance_conditions' sc16 repeats location 2 with another TIV: allowed)."""
    folder = require_shared(Path("fm-validation") / suite)
    ri = {"ri_info": folder / "ri_info.csv", "ri_scope": folder / "ri_scope.csv"} \
        if (folder / "ri_info.csv").exists() else {}
    exposure = load_exposure(folder / "location.csv", folder / "account.csv", **ri,
                             allow_duplicate_locations=suite == "insurance_conditions")
    assert not any(p.fatal for p in exposure.warnings)
    mapped = pd.read_csv(folder / "expected" / "gul_summary_map.csv", dtype=str)
    ids = mapped[["loc_id", "PortNumber", "AccNumber", "LocNumber"]].drop_duplicates()
    mine = exposure.location[["PortNumber", "AccNumber", "LocNumber", "loc_id"]].astype(str).drop_duplicates()
    joined = ids.merge(mine, on=["PortNumber", "AccNumber", "LocNumber"], suffixes=("_reference", ""))
    assert len(joined) == len(ids)
    assert (joined["loc_id_reference"] == joined["loc_id"]).all()


@pytest.mark.reference
def test_piwind_loc_id_matches_reference_keys() -> None:
    piwind = require_shared("piwind")
    exposure = load_exposure(piwind / "tests/inputs/SourceLocOEDPiWind10.csv",
                             piwind / "tests/inputs/SourceAccOEDPiWind.csv")
    keys = pd.read_csv(piwind / "expected-inputs/loc10/keys.csv")
    summary = pd.read_csv(piwind / "expected-inputs/loc10/gul_summary_map.csv", dtype={"LocNumber": str})
    reference = summary.drop_duplicates("loc_id").set_index("LocNumber")["loc_id"]
    mine = exposure.location.set_index(exposure.location["LocNumber"].astype(str))["loc_id"]
    assert (mine.loc[reference.index] == reference).all()
    assert set(keys["LocID"]) == set(exposure.location["loc_id"])


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path: Path) -> None:
    good = write(tmp_path, "location.csv", LOCATION)
    lines = good.read_text().splitlines()
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("\n".join([lines[0]] + [line + ",extra" for line in lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="more cells than the header"):
        load_exposure(shifted, write(tmp_path, "account.csv", ACCOUNT))
