"""The lookup validation report and summary levels files (exposure_summary_report.json, _levels.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from perilflow.kernel.inputs.exposure_summary import (
    EXPOSURE_SUMMARY_LEVELS,
    EXPOSURE_SUMMARY_REPORT,
    exposure_summary,
    summary_levels,
    write_exposure_summaries,
)
from perilflow.kernel.inputs.generate import generate_files
from perilflow.kernel.lookup import read_keys, read_keys_errors
from perilflow.kernel.lookup.common import KEYS_STATUSES
from perilflow.kernel.mdk import load_mdk_config
from perilflow.kernel.oed import load_exposure
from tests.conftest import require_shared

COVERAGES = {"buildings": "BuildingTIV", "other": "OtherTIV", "contents": "ContentsTIV", "bi": "BITIV"}
STATUS_KEYS = ["all", *KEYS_STATUSES]


def check_shape(report: dict) -> None:
    """Every peril has 'all' and each status, each with the four coverage types; statuses add up to 'all'."""
    assert set(report["total"]) == {"modelled", "not-modelled", "portfolio"}
    for peril, sections in ((p, s) for p, s in report.items() if p != "total"):
        assert list(sections) == STATUS_KEYS, peril
        for section in sections.values():
            assert set(section) == {"tiv", "tiv_by_coverage", "number_of_locations",
                                    "number_of_locations_by_coverage"}
            assert list(section["tiv_by_coverage"]) == list(COVERAGES)
            assert section["tiv"] == pytest.approx(sum(section["tiv_by_coverage"].values()))
        for name in COVERAGES:
            assert sum(sections[s]["tiv_by_coverage"][name] for s in KEYS_STATUSES) == pytest.approx(
                sections["all"]["tiv_by_coverage"][name])


@pytest.mark.reference
def test_piwind_loc10_report_and_levels_from_generate_files(tmp_path: Path) -> None:
    piwind = require_shared("piwind")
    written = generate_files(piwind / "oasislmf_loc10.json", tmp_path, file_format="csv")
    assert written["exposure_summary_report"] == tmp_path / EXPOSURE_SUMMARY_REPORT
    report = json.loads((tmp_path / EXPOSURE_SUMMARY_REPORT).read_text())
    levels = json.loads((tmp_path / EXPOSURE_SUMMARY_LEVELS).read_text())
    check_shape(report)

    # direct pandas: the portfolio's TIV per coverage type, and the keys' share of it per peril
    config = load_mdk_config(piwind / "oasislmf_loc10.json")
    location = pd.read_csv(config.location)
    keys = read_keys(tmp_path / "keys.csv")
    assert read_keys_errors(tmp_path / "keys-errors.csv").empty
    portfolio = {name: float(location[column].sum()) for name, column in COVERAGES.items()}
    assert report["total"]["portfolio"] == {"tiv": pytest.approx(sum(portfolio.values())),
                                            "number_of_locations": len(location)}
    assert sorted(p for p in report if p != "total") == sorted(keys["peril_id"].unique()) == ["WSS", "WTC"]
    exposure = load_exposure(config.location)
    tiv_of = exposure.location.set_index("loc_id")
    for peril in ("WSS", "WTC"):
        assert report[peril]["all"]["tiv_by_coverage"] == pytest.approx(portfolio)
        assert report[peril]["all"]["number_of_locations"] == len(location)
        of_peril = keys[keys["peril_id"] == peril]
        for name, column in COVERAGES.items():
            coverage_type = list(COVERAGES).index(name) + 1
            loc_ids = of_peril.loc[of_peril["coverage_type"] == coverage_type, "loc_id"]
            expected = float(tiv_of.loc[loc_ids, column].astype(float).sum())
            assert report[peril]["success"]["tiv_by_coverage"][name] == pytest.approx(expected)
            assert report[peril]["success"]["number_of_locations_by_coverage"][name] == loc_ids.nunique()
        # PiWind's lookup returns buildings and contents keys only: the other coverages are "noreturn"
        assert report[peril]["noreturn"]["number_of_locations_by_coverage"] == {
            "buildings": 0, "other": len(location), "contents": 0, "bi": len(location)}
        assert report[peril]["success"]["tiv"] + report[peril]["noreturn"]["tiv"] == pytest.approx(
            sum(portfolio.values()))
    assert report["total"]["modelled"]["tiv"] == pytest.approx(portfolio["buildings"] + portfolio["contents"])

    # the levels: the location fields with a value everywhere, the account fields, the Oasis columns
    filled = [c for c in location.columns if location[c].notna().all() and (location[c].astype(str) != "0").all()]
    account = pd.read_csv(config.account)
    assert set(levels) == {"GUL", "IL", "RI"}  # the loc10 config has reinsurance
    gul = levels["GUL"]["available"]
    assert set(filled) <= set(gul) and "OtherTIV" not in gul and "ContentsTIV" not in gul
    assert set(account.columns[account.notna().any()]) <= set(gul)
    assert {"coverage_type_id", "peril_id", "coverage_id"} <= set(gul) and "loc_id" not in gul
    assert gul["BuildingTIV"] == "Building Total Insured Value" and gul["peril_id"] == "OED peril code"
    assert levels["IL"]["available"] == levels["RI"]["available"] == gul
    assert list(gul) == sorted(gul)


def test_levels_list_ri_when_the_exposure_has_reinsurance() -> None:
    piwind = require_shared("piwind")
    config = load_mdk_config(piwind / "oasislmf_loc10.json")
    exposure = load_exposure(config.location, config.account, config.ri_info, config.ri_scope)
    levels = summary_levels(exposure.location, exposure.account, reinsurance=True)
    assert set(levels) == {"GUL", "IL", "RI"} and levels["RI"] == levels["IL"]
    assert set(summary_levels(exposure.location)) == {"GUL"}


def synthetic() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    location = pd.DataFrame({
        "PortNumber": ["P"] * 4, "AccNumber": ["A"] * 4, "LocNumber": ["L1", "L2", "L3", "L4"],
        "loc_id": [1, 2, 3, 4], "BuildingTIV": [100.0, 200.0, 400.0, 800.0], "ContentsTIV": [10.0, 20.0, 0.0, 80.0],
        "OccupancyCode": [1050, 1050, 1050, None], "CountryCode": ["GB", "GB", "GB", "GB"],
        "PostalCode": ["X", "", "Y", "Z"],
    })
    keys = pd.DataFrame({"loc_id": [1, 1, 4], "peril_id": ["WTC", "WTC", "WTC"], "coverage_type": [1, 3, 1],
                         "area_peril_id": [5, 5, 6], "vulnerability_id": [1, 2, 1]})
    errors = pd.DataFrame({
        "loc_id": [2, 2, 3, 1, 1],
        "peril_id": ["WTC", "WTC", "WTC", "WSS", "WTC"],
        "coverage_type": [1, 3, 1, 1, 1],
        "status": ["fail", "nomatch", "notatrisk", "fail_ap", "fail"],  # the last repeats a success: keys win
        "message": ["outside the model's area", "no vulnerability", "", "", "duplicate"],
    })
    return location, keys, errors


def test_synthetic_failed_keys_are_split_by_status(tmp_path: Path) -> None:
    location, keys, errors = synthetic()
    report = exposure_summary(location, keys, errors)
    check_shape(report)
    assert list(report) == ["total", "WTC", "WSS"]
    wtc = report["WTC"]
    assert wtc["success"]["tiv_by_coverage"] == {"buildings": 900.0, "other": 0.0, "contents": 10.0, "bi": 0.0}
    assert wtc["success"]["number_of_locations"] == 2
    assert wtc["fail"]["tiv"] == 200.0 and wtc["fail"]["number_of_locations"] == 1
    assert wtc["nomatch"]["tiv_by_coverage"]["contents"] == 20.0
    assert wtc["notatrisk"]["tiv"] == 400.0
    # loc 3 contents and loc 4 contents had no key at all
    assert wtc["noreturn"]["tiv_by_coverage"] == {"buildings": 0.0, "other": 0.0, "contents": 80.0, "bi": 0.0}
    assert wtc["noreturn"]["number_of_locations_by_coverage"]["contents"] == 2
    assert wtc["all"]["tiv"] == 1610.0 and wtc["all"]["number_of_locations"] == 4
    wss = report["WSS"]
    assert wss["fail_ap"]["tiv"] == 100.0 and wss["noreturn"]["tiv"] == 1510.0
    total = report["total"]
    assert total["portfolio"] == {"tiv": 1610.0, "number_of_locations": 4}
    # modelled: success or notatrisk for some peril; a (location, coverage) counts once across perils
    assert total["modelled"] == {"tiv": 100.0 + 10.0 + 800.0 + 400.0, "number_of_locations": 3}
    assert total["not-modelled"]["number_of_locations"] == 4

    written = write_exposure_summaries(tmp_path / "out", location, keys, errors, account=None)
    assert json.loads(written["exposure_summary_report"].read_text()) == report
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []  # no temporary left
    levels = json.loads(written["exposure_summary_levels"].read_text())
    gul = levels["GUL"]["available"]
    # ContentsTIV has a zero, OccupancyCode a missing value and PostalCode an empty one: not available
    assert {"BuildingTIV", "CountryCode", "LocNumber", "PortNumber", "AccNumber"} <= set(gul)
    assert not {"ContentsTIV", "OccupancyCode", "PostalCode", "loc_id"} & set(gul)
    assert set(levels) == {"GUL"}


def test_no_key_at_all_gives_an_empty_peril_list_and_everything_not_modelled() -> None:
    location, _, _ = synthetic()
    report = exposure_summary(location, None, None)
    assert list(report) == ["total"]
    assert report["total"]["modelled"] == {"tiv": 0.0, "number_of_locations": 0}
    assert report["total"]["portfolio"]["tiv"] == 1610.0


def test_a_location_without_tiv_columns_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no TIV column"):
        exposure_summary(pd.DataFrame({"loc_id": [1]}), None, None)
    with pytest.raises(ValueError, match="loc_id"):
        exposure_summary(pd.DataFrame({"BuildingTIV": [1.0]}), None, None)
