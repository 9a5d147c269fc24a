"""Reinsurance input generation (perilflow.kernel.inputs.ri) against the reference's files and losses.

Reference tests (``@pytest.mark.reference``):

* every fm-validation suite with ``ri_info.csv``: the suite's expected insurance files are
  copied to a tmp folder, the RI files are generated from the suite's OED files, and
  ``fm_run`` reproduces the suite's ``rils.csv`` (same rows, losses within half a cent plus
  1e-5 relative: the reference rounds to cents). For ``issues`` this is the only check,
  since its expected ``RI_1`` comes from another run (335 items for 409 outputs);
* the generated RI folders against the suites' expected ``RI_n``: the tree (fm_programme)
  and fm_xref always equal after sorting; fm_policytc and fm_profile where the reference
  files were written by the current generator (``EXACT_RI_FOLDERS``; the others come from an
  older generator that placed the same cessions on other nodes, so only losses compare);
* PiWind ``loc10`` and ``loc12598`` against oasislmf 2.5.8's ``RI_1`` and ``ri_layers.json``:
  identical files, row for row.

The other tests build small portfolios in memory: numbering and layers, net-of chaining
through two inuring priorities with hand-computed losses, atomic rewrites, and one clear
error (file, row, column, fix) per kind of bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perilflow.kernel.fm.run import fm_run
from perilflow.kernel.inputs.ri import REINS_TYPES, RISK_LEVELS, RiInputError, build_ri_passes, write_ri_inputs
from perilflow.kernel.oasis.files import read_fm_inputs, read_ri_layers
from tests.conftest import require_shared

ATOL = 0.005  # the reference's losses are rounded to cents
RTOL = 1e-5
RI_FILES = ("fm_programme", "fm_policytc", "fm_profile", "fm_xref")
INSURANCE_FILES = ("items", "coverages", "fm_programme", "fm_policytc", "fm_profile", "fm_xref", "fm_summary_map")

#: Suite folders holding expected insurance files and a rils.csv computed from the suite's RI files.
RI_SUITES = [
    "reinsurance1/expected", "reinsurance1/expected_subperils",
    "reinsurance2/expected", "reinsurance2/expected_subperils",
    "reinsurance3/expected", "reinsurance4/expected",
    "issues/expected", "issues/expected_subperils",
]
#: Expected RI folders that carry the RI files of the insurance files beside them.
STRUCTURE_SUITES = ["reinsurance1/expected", "reinsurance2/expected", "reinsurance3/expected", "reinsurance4/expected"]
#: (suite, pass) whose fm_policytc and fm_profile the current reference generator wrote.
EXACT_RI_FOLDERS = {("reinsurance2/expected", 8), ("reinsurance2/expected", 11),
                    ("reinsurance3/expected", 1), ("reinsurance4/expected", 1)}


# --------------------------------------------------------------------------- helpers


def loc_ids(location: pd.DataFrame) -> np.ndarray:
    """oasislmf's get_ids over PortNumber/AccNumber/LocNumber: ids by sorted (text) key, 1-based."""
    keys = location[["PortNumber", "AccNumber", "LocNumber"]].astype(str)
    ordered = keys.sort_values(list(keys.columns), kind="stable")
    ids = ordered.groupby(list(keys.columns), sort=False).ngroup() + 1
    return ids.sort_index().to_numpy()


def read_oed(path: Path) -> pd.DataFrame:
    """An OED csv as pandas reads it."""
    return pd.read_csv(path, low_memory=False)


def read_location(path: Path) -> pd.DataFrame:
    """An OED location csv with the loc_id column the reference adds."""
    frame = read_oed(path)
    frame["loc_id"] = loc_ids(frame)
    return frame


def sorted_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns by name, rows sorted: for comparing files written in another order."""
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns).reset_index(drop=True)


def read_ri_file(folder: Path, name: str) -> pd.DataFrame:
    """One RI csv, with fm_profile amounts as float32 (the precision of the .bin files)."""
    frame = pd.read_csv(folder / f"{name}.csv")
    if name == "fm_profile":
        amounts = [c for c in frame.columns if c not in ("profile_id", "calcrule_id")]
        frame[amounts] = frame[amounts].astype(np.float32)
    return frame


def compare_losses(got_path: Path, expected_path: Path) -> list[str]:
    """Missing rows, extra rows and differing losses (an empty list means equal)."""
    got, exp = pd.read_csv(got_path), pd.read_csv(expected_path)
    keys = [c for c in exp.columns if c != "loss"]
    both = exp.merge(got, on=keys, how="outer", suffixes=("_exp", "_got"), indicator=True)
    problems = [f"missing row {r}" for r in both.loc[both["_merge"] == "left_only", keys].to_dict("records")[:5]]
    problems += [f"extra row {r}" for r in both.loc[both["_merge"] == "right_only", keys].to_dict("records")[:5]]
    matched = both[both["_merge"] == "both"]
    off = ~np.isclose(matched["loss_got"], matched["loss_exp"], rtol=RTOL, atol=ATOL)
    problems += [f"{r}" for r in matched.loc[off, keys + ["loss_exp", "loss_got"]].to_dict("records")[:10]]
    return problems


def generate_for_suite(suite: str, tmp_path: Path) -> tuple[Path, Path]:
    """Copy a suite folder's insurance files to tmp and generate its RI files; return (suite dir, tmp dir)."""
    folder = require_shared(Path("fm-validation") / suite)
    root = folder.parent
    work = tmp_path / "input"
    work.mkdir()
    for name in INSURANCE_FILES:
        shutil.copy(folder / f"{name}.csv", work / f"{name}.csv")
    write_ri_inputs(work, read_oed(root / "ri_info.csv"), read_oed(root / "ri_scope.csv"),
                    read_location(root / "location.csv"), read_oed(root / "account.csv"),
                    pd.read_csv(folder / "fm_summary_map.csv"))
    return folder, work


# --------------------------------------------------------------------------- reference data


@pytest.mark.reference
@pytest.mark.parametrize("suite", RI_SUITES)
def test_generated_ri_files_reproduce_suite_rils(suite: str, tmp_path: Path) -> None:
    folder, work = generate_for_suite(suite, tmp_path)
    written = fm_run(work, tmp_path / "out", [1.0])
    problems = compare_losses(written["rils"], folder / "rils.csv")
    assert not problems, "\n".join(problems)


@pytest.mark.reference
def test_loc_id_helper_numbers_locations_like_the_reference() -> None:
    """The tests' loc_id equals the one oasislmf wrote beside the suite's inputs.

    (Not so for ``issues``: its location.csv has two more locations than its expected
    files were made from, which is why outputs join locations on PortNumber/AccNumber/LocNumber.)
    """
    root = require_shared("fm-validation/reinsurance2")
    mine = read_location(root / "location.csv")
    theirs = pd.read_csv(root / "expected" / "location.csv")
    np.testing.assert_array_equal(mine["loc_id"], theirs["loc_id"])


@pytest.mark.reference
@pytest.mark.parametrize("suite", STRUCTURE_SUITES)
def test_generated_ri_files_match_suite_ri_folders(suite: str, tmp_path: Path) -> None:
    folder, work = generate_for_suite(suite, tmp_path)
    expected = json.loads((folder / "ri_layers.json").read_text())
    got = json.loads((work / "ri_layers.json").read_text())
    strip = [(k, v["inuring_priority"], v["risk_level"]) for k, v in expected.items()]
    assert [(k, v["inuring_priority"], v["risk_level"]) for k, v in got.items()] == strip
    assert all(v["directory"] == f"RI_{k}" for k, v in got.items())
    for number in map(int, expected):
        names = RI_FILES if (suite, number) in EXACT_RI_FOLDERS else ("fm_programme", "fm_xref")
        for name in names:
            mine = sorted_table(read_ri_file(work / f"RI_{number}", name))
            theirs = sorted_table(read_ri_file(folder / f"RI_{number}", name))
            pd.testing.assert_frame_equal(mine, theirs, check_dtype=False, obj=f"RI_{number}/{name}")


@pytest.mark.reference
@pytest.mark.parametrize("size, location_file", [("loc10", "SourceLocOEDPiWind10.csv"),
                                                 ("loc12598", "SourceLocOEDPiWind.csv")])
def test_piwind_ri_files_equal_oasislmf_2_5_8(size: str, location_file: str, tmp_path: Path) -> None:
    piwind = require_shared("piwind")
    inputs, expected = piwind / "tests" / "inputs", piwind / "expected-inputs" / size
    passes = write_ri_inputs(tmp_path, read_oed(inputs / "SourceReinsInfoOEDPiWind.csv"),
                             read_oed(inputs / "SourceReinsScopeOEDPiWind.csv"), read_location(inputs / location_file),
                             read_oed(inputs / "SourceAccOEDPiWind.csv"),
                             pd.read_csv(expected / "fm_summary_map.csv"))
    assert [(p.number, p.inuring_priority, p.risk_level) for p in passes] == [(1, 1, "LOC")]
    assert json.loads((tmp_path / "ri_layers.json").read_text()) == json.loads(
        (expected / "ri_layers.json").read_text())
    for name in RI_FILES:
        theirs = read_ri_file(expected / "RI_1", name)
        mine = read_ri_file(tmp_path / "RI_1", name)[list(theirs.columns)]
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False, obj=f"RI_1/{name}")


# --------------------------------------------------------------------------- small portfolios


def portfolio() -> dict[str, pd.DataFrame]:
    """Two accounts, three locations, one policy each; one output per location (building only)."""
    location = pd.DataFrame({
        "PortNumber": [1, 1, 1], "AccNumber": ["A1", "A1", "A2"], "LocNumber": [10, 11, 20],
        "LocGroup": ["G1", "G1", np.nan], "CountryCode": ["GB", "GB", "FR"], "BuildingTIV": [100.0, 200.0, 300.0],
    })
    location["loc_id"] = loc_ids(location)
    account = pd.DataFrame({"PortNumber": [1, 1], "AccNumber": ["A1", "A2"], "PolNumber": ["P1", "P2"],
                            "CedantName": ["C1", "C2"], "PolInceptionDate": ["2024-03-01", "2023-06-01"]})
    fm_summary_map = pd.DataFrame({
        "output_id": [1, 2, 3], "agg_id": [1, 2, 3], "loc_id": [1, 2, 3], "PortNumber": [1, 1, 1],
        "AccNumber": ["A1", "A1", "A2"], "LocNumber": [10, 11, 20], "PolNumber": ["P1", "P1", "P2"],
        "layer_id": [1, 1, 1], "coverage_type_id": [1, 1, 1], "peril_id": ["WTC"] * 3, "tiv": [100.0, 200.0, 300.0],
    })
    ri_info = pd.DataFrame({
        "ReinsNumber": [1, 2], "ReinsType": ["QS", "CXL"], "InuringPriority": [1, 2], "RiskLevel": ["", np.nan],
        "CededPercent": [0.5, 1.0], "OccAttachment": [np.nan, 10.0], "OccLimit": [np.nan, 50.0],
        "PlacedPercent": [1.0, 1.0],
    })
    ri_scope = pd.DataFrame({"ReinsNumber": [1, 2], "PortNumber": [1.0, 1.0], "AccNumber": [np.nan, np.nan]})
    return {"ri_info": ri_info, "ri_scope": ri_scope, "location": location, "account": account,
            "fm_summary_map": fm_summary_map}


def insurance_folder(folder: Path, tivs: list[float]) -> None:
    """A pass-through insurance programme: one item, coverage and output per TIV."""
    n = len(tivs)
    ids = np.arange(1, n + 1)
    pd.DataFrame({"item_id": ids, "coverage_id": ids, "areaperil_id": 1, "vulnerability_id": 1,
                  "group_id": 1}).to_csv(folder / "items.csv", index=False)
    pd.DataFrame({"coverage_id": ids, "tiv": tivs}).to_csv(folder / "coverages.csv", index=False)
    pd.DataFrame({"from_agg_id": ids, "level_id": 1, "to_agg_id": ids}).to_csv(folder / "fm_programme.csv",
                                                                                index=False)
    pd.DataFrame({"level_id": 1, "agg_id": ids, "layer_id": 1, "profile_id": 1}).to_csv(
        folder / "fm_policytc.csv", index=False)
    (folder / "fm_profile.csv").write_text(
        "profile_id,calcrule_id,deductible1,deductible2,deductible3,attachment1,limit1,share1,share2,share3\n"
        "1,12,0,0,0,0,0,0,0,0\n")
    pd.DataFrame({"output": ids, "agg_id": ids, "layer_id": 1}).to_csv(folder / "fm_xref.csv", index=False)


def test_net_of_each_inuring_priority_with_hand_computed_losses(tmp_path: Path) -> None:
    """QS 50% (priority 1), then CXL 50 xs 10 on what the QS retains (priority 2)."""
    insurance_folder(tmp_path, [100.0, 200.0, 300.0])
    passes = write_ri_inputs(tmp_path, **portfolio())
    assert [(p.number, p.inuring_priority, p.risk_level) for p in passes] == [(1, 1, "SEL"), (2, 2, "SEL")]
    assert [p.directory for p in read_ri_layers(tmp_path)] == [tmp_path / "RI_1", tmp_path / "RI_2"]
    for ri in passes:
        read_fm_inputs(ri.directory)  # every RI folder passes the FM cross-file checks
    rils = pd.read_csv(fm_run(tmp_path, tmp_path / "out", [1.0])["rils"])
    # QS keeps 50, 100, 150 (total 300); the CXL cedes min(300 - 10, 50) = 50, back-allocated pro rata.
    np.testing.assert_allclose(rils["loss"], np.array([50.0, 100.0, 150.0]) * 250.0 / 300.0)


def test_pass_structure_and_profiles() -> None:
    (first, second) = build_ri_passes(**portfolio())
    # one filter node per (port, account, policy, group, location), one risk node (the portfolio)
    programme = pd.DataFrame(first.fm_programme)
    assert programme.to_dict("list") == {
        "from_agg_id": [1, 1, 2, 3, 1, 2, 3], "level_id": [3, 2, 2, 2, 1, 1, 1], "to_agg_id": [1, 1, 1, 1, 1, 2, 3]}
    profile = pd.DataFrame(first.fm_profile)
    assert profile["calcrule_id"].tolist() == [14, 12, 24, 23]
    assert profile.loc[2, ["limit1", "share1", "share2"]].tolist() == [pytest.approx(1e13), 0.5, 1.0]
    policytc = pd.DataFrame(first.fm_policytc)
    assert policytc["profile_id"].tolist() == [4, 3, 2, 2, 2]
    assert pd.DataFrame(first.fm_xref).to_dict("list") == {"output": [1, 2, 3], "agg_id": [1, 2, 3],
                                                          "layer_id": [1, 1, 1]}
    cxl = pd.DataFrame(second.fm_profile)
    assert cxl.loc[2, ["calcrule_id", "attachment1", "limit1", "share1", "share2"]].tolist() == [24, 10, 50, 1, 1]
    assert pd.DataFrame(second.fm_policytc)["profile_id"].tolist() == [3, 2, 2, 2, 2]


def test_scope_fields_from_location_and_account_open_only_matching_nodes() -> None:
    data = portfolio()
    data["ri_info"] = pd.DataFrame({"ReinsNumber": [1, 2, 3], "ReinsType": ["QS"] * 3, "InuringPriority": 1,
                                    "RiskLevel": "SEL", "CededPercent": 0.5})
    data["ri_scope"] = pd.DataFrame({"ReinsNumber": [1, 2, 3], "LocGroup": ["G1", None, None],
                                     "CountryCode": [None, "FR", None], "CedantName": [None, None, "C1"]})
    (only,) = build_ri_passes(**data)
    policytc = pd.DataFrame(only.fm_policytc)
    filters = policytc[policytc["level_id"] == 1].pivot(index="agg_id", columns="layer_id", values="profile_id")
    # filter nodes: (A1, P1, G1, 10), (A1, P1, G1, 11), (A2, P2, '', 20); layers = contracts 1, 2, 3
    assert filters.to_numpy().tolist() == [[2, 1, 2], [2, 1, 2], [1, 2, 1]]


def test_fac_contracts_share_layers_and_name_their_risk_exactly() -> None:
    data = portfolio()
    data["ri_info"] = pd.DataFrame({"ReinsNumber": [1, 2, 3], "ReinsType": ["FAC", "FAC", "QS"],
                                    "InuringPriority": 1, "RiskLevel": "LOC", "RiskLimit": [30.0, 40.0, 0.0],
                                    "CededPercent": 1.0})
    data["ri_scope"] = pd.DataFrame({"ReinsNumber": [1, 2, 2, 3], "PortNumber": [1, 1, 1, 1],
                                     "AccNumber": ["A1", "A1", "A1", None], "LocNumber": [10, 10, 11, None]})
    (only,) = build_ri_passes(**data)
    policytc = pd.DataFrame(only.fm_policytc)
    risk = policytc[policytc["level_id"] == 2].pivot(index="agg_id", columns="layer_id", values="profile_id")
    profile = pd.DataFrame(only.fm_profile).set_index("profile_id")
    limits = risk.apply(lambda column: profile.loc[column, "limit1"].to_numpy())
    # layer 1: FAC 1 on loc 10 and FAC 2 on loc 11; layer 2: FAC 2 on loc 10; layer 3: the QS everywhere
    assert limits[1].tolist() == [30, 40, 0]
    assert limits[2].tolist() == [40, 0, 0]
    assert limits[3].tolist() == [pytest.approx(1e13)] * 3
    assert pd.DataFrame(only.fm_xref)["layer_id"].unique().tolist() == [3]


def test_risks_attaching_covers_policies_incepting_in_the_period() -> None:
    data = portfolio()
    data["ri_info"] = pd.DataFrame({"ReinsNumber": [1], "ReinsType": ["QS"], "InuringPriority": [1],
                                    "AttachmentBasis": ["RA"], "ReinsInceptionDate": ["2024-01-01"],
                                    "ReinsExpiryDate": ["2024-12-31"]})
    data["ri_scope"] = pd.DataFrame({"ReinsNumber": [1], "PortNumber": [1]})
    (only,) = build_ri_passes(**data)
    policytc = pd.DataFrame(only.fm_policytc)
    assert policytc.loc[policytc["level_id"] == 1, "profile_id"].tolist() == [2, 2, 1]  # A2 incepted in 2023


def test_identifiers_compare_as_text_whatever_pandas_made_of_them() -> None:
    """PortNumber 1, 1.0 and "1" are one portfolio; LocNumber 10 and "10" one location."""
    data = portfolio()
    data["fm_summary_map"]["PortNumber"] = ["1", "1", "1"]
    data["location"]["LocNumber"] = data["location"]["LocNumber"].astype(float)
    data["ri_scope"]["PortNumber"] = ["1", "1"]
    plain = build_ri_passes(**portfolio())
    mixed = build_ri_passes(**data)
    for a, b in zip(plain, mixed, strict=True):
        for name in ("fm_programme", "fm_policytc", "fm_profile", "fm_xref"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_rewrite_replaces_whole_folders(tmp_path: Path) -> None:
    write_ri_inputs(tmp_path, **portfolio())
    stale = tmp_path / "RI_1" / "fm_programme.bin"
    stale.write_bytes(b"\0" * 12)
    write_ri_inputs(tmp_path, **portfolio())
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "RI_1").iterdir()) == sorted(f"{n}.csv" for n in RI_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RI_1", "RI_2", "ri_layers.json"]


def test_inputs_are_not_modified() -> None:
    data = portfolio()
    before = {k: v.copy() for k, v in data.items()}
    build_ri_passes(**data)
    for key, frame in data.items():
        pd.testing.assert_frame_equal(frame, before[key])


def _broken(change) -> dict[str, pd.DataFrame]:
    data = portfolio()
    change(data)
    return data


BAD_INPUTS = {
    "unknown ReinsType": (lambda d: d["ri_info"].__setitem__("ReinsType", ["QS", "AXL"]),
                          "ri_info.csv, row 2 (line 3), column 'ReinsType'"),
    "unknown RiskLevel": (lambda d: d["ri_info"].__setitem__("RiskLevel", ["LOC", "XXX"]),
                          "ri_info.csv, row 2 (line 3), column 'RiskLevel'"),
    "scope of an unknown contract": (lambda d: d["ri_scope"].__setitem__("ReinsNumber", [1, 7]),
                                     "ri_scope.csv, row 2 (line 3), column 'ReinsNumber'"),
    "contract without scope": (lambda d: d["ri_scope"].__setitem__("ReinsNumber", [1, 1]),
                               "ri_info.csv, row 2 (line 3), column 'ReinsNumber'"),
    "scope names a missing account": (lambda d: d["ri_scope"].__setitem__("AccNumber", [np.nan, "A9"]),
                                      "ri_scope.csv, row 2 (line 3), column 'AccNumber'"),
    "scope names a missing location": (lambda d: d["ri_scope"].__setitem__("LocNumber", [np.nan, 99]),
                                       "ri_scope.csv, row 2 (line 3), column 'LocNumber'"),
    "FAC scope without its location": (lambda d: (d["ri_info"].__setitem__("ReinsType", ["FAC", "CXL"]),
                                                  d["ri_info"].__setitem__("RiskLevel", ["LOC", ""])),
                                       "ri_scope.csv, row 1 (line 2), column 'AccNumber'"),
    "percent as text": (lambda d: d["ri_info"].__setitem__("CededPercent", ["50%", 1.0]),
                        "ri_info.csv, row 1 (line 2), column 'CededPercent'"),
    "percent above 1": (lambda d: d["ri_info"].__setitem__("PlacedPercent", [1.0, 20.0]),
                        "ri_info.csv, row 2 (line 3), column 'PlacedPercent'"),
    "missing inuring priority": (lambda d: d["ri_info"].__setitem__("InuringPriority", [1, np.nan]),
                                 "ri_info.csv, row 2 (line 3), column 'InuringPriority'"),
    "two rows for one contract": (lambda d: d["ri_info"].__setitem__("ReinsNumber", [1, 1]),
                                  "ri_info.csv, row 2 (line 3), column 'ReinsNumber'"),
    "RA without dates": (lambda d: d["ri_info"].__setitem__("AttachmentBasis", ["RA", "LO"]),
                         "ri_info.csv, row 1 (line 2), column 'ReinsInceptionDate'"),
    "output of an unknown location": (lambda d: d["fm_summary_map"].__setitem__("LocNumber", [10, 11, 21]),
                                      "fm_summary_map.csv, row 3 (line 4), column 'LocNumber'"),
    "missing column": (lambda d: d.__setitem__("ri_info", d["ri_info"].drop(columns="ReinsType")),
                       "ri_info.csv, column 'ReinsType'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_one_clear_error(case: str) -> None:
    change, where = BAD_INPUTS[case]
    with pytest.raises(ValueError) as raised:
        build_ri_passes(**_broken(change))
    assert isinstance(raised.value, RiInputError)
    message = str(raised.value)
    assert message.startswith(where), message
    assert " Fix: " in message


def test_ra_policy_without_inception_date_names_the_account_row() -> None:
    data = portfolio()
    data["ri_info"] = pd.DataFrame({"ReinsNumber": [1], "ReinsType": ["QS"], "InuringPriority": [1],
                                    "AttachmentBasis": ["RA"], "ReinsInceptionDate": ["2024-01-01"],
                                    "ReinsExpiryDate": ["2024-12-31"]})
    data["ri_scope"] = pd.DataFrame({"ReinsNumber": [1], "AccNumber": ["A2"]})
    data["account"].loc[1, "PolInceptionDate"] = np.nan
    data["account"].attrs["path"] = "accounts/acc.csv"
    with pytest.raises(RiInputError, match=r"^accounts/acc.csv, row 2 \(line 3\), column 'PolInceptionDate'"):
        build_ri_passes(**data)


# --------------------------------------------------------------------------- any valid programme


#: Scope rows that name a risk exactly, per risk level (for FAC and SS), from portfolio().
EXACT_SCOPES = {
    "LOC": [{"PortNumber": 1, "AccNumber": "A1", "LocNumber": 10}, {"PortNumber": 1, "AccNumber": "A2",
                                                                     "LocNumber": 20}],
    "POL": [{"PortNumber": 1, "AccNumber": "A1", "PolNumber": "P1"}],
    "ACC": [{"PortNumber": 1, "AccNumber": "A2"}],
    "LGR": [{"LocGroup": "G1"}],
    "SEL": [{"PortNumber": 1}, {}],
}
LOOSE_SCOPES = EXACT_SCOPES["LOC"] + EXACT_SCOPES["POL"] + EXACT_SCOPES["SEL"] + [
    {"AccNumber": "A1"}, {"CountryCode": "GB"}, {"CedantName": "C2"}, {"LocGroup": "G1", "PortNumber": 1}]


@st.composite
def programmes(draw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1-4 contracts of any type and risk level, each with 1-2 scope rows and random terms."""
    info, scope = [], []
    for number in range(1, draw(st.integers(1, 4)) + 1):
        reins_type = draw(st.sampled_from(REINS_TYPES))
        risk_level = draw(st.sampled_from(RISK_LEVELS))
        fraction = st.sampled_from([0.0, 0.2, 0.5, 1.0])
        amount = st.sampled_from([0.0, 10.0, 50.0, 150.0])
        info.append({"ReinsNumber": number, "ReinsType": reins_type, "RiskLevel": risk_level,
                     "InuringPriority": draw(st.integers(1, 2)), "CededPercent": draw(fraction),
                     "PlacedPercent": draw(fraction), "RiskLimit": draw(amount), "RiskAttachment": draw(amount),
                     "OccLimit": draw(amount), "OccAttachment": draw(amount)})
        choices = EXACT_SCOPES[risk_level] if reins_type in ("FAC", "SS") else LOOSE_SCOPES
        rows = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique_by=repr))
        scope += [{"ReinsNumber": number, **row, "CededPercent": draw(fraction)} for row in rows]
    return pd.DataFrame(info), pd.DataFrame(scope)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(programme=programmes())
def test_any_programme_gives_consistent_files_and_net_within_gross(programme, tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("ri")
    insurance_folder(folder, [100.0, 200.0, 300.0])
    data = portfolio()
    data["ri_info"], data["ri_scope"] = programme
    passes = write_ri_inputs(folder, **data)
    keys = sorted({(int(p), level) for p, level in zip(data["ri_info"]["InuringPriority"],
                                                          data["ri_info"]["RiskLevel"], strict=True)},
                  key=lambda k: (k[0], RISK_LEVELS.index(k[1])))
    assert [(p.inuring_priority, p.risk_level) for p in passes] == keys
    for ri in passes:
        fm = read_fm_inputs(ri.directory)
        assert set(fm.fm_programme["from_agg_id"][fm.fm_programme["level_id"] == 1]) == {1, 2, 3}
    written = fm_run(folder, folder / "out", [1.0])
    net = pd.read_csv(written["rils"]).set_index("output_id")["loss"].reindex([1, 2, 3], fill_value=0.0)
    assert ((net >= -1e-6) & (net <= np.array([100.0, 200.0, 300.0]) + 1e-3)).all()
