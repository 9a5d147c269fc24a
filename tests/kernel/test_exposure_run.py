"""exposure-run: OED -> deterministic keys -> Oasis files -> losses -> loc_summary.csv, against the reference.

For every fm-validation suite with a location and an account file (cyber's location file is
not published), the run with peril WTC reproduces ``expected/loc_summary.csv`` and the run
with the sub-peril group WW2 reproduces ``expected_subperils/loc_summary.csv``; suites with a
``loss_factors.csv`` run with those factors. The reinsurance suites run with their ri_info /
ri_scope and are checked on ``loss_ri`` too (reinsurance3 and reinsurance4 publish no
loc_summary: their ils.csv and rils.csv are compared).

Tolerance: relative 1e-5 plus half a cent per FM output summed into the location (the
reference rounds each output to cents and computes in float32; a location sums several
outputs). Six of the 2,986 insurance_conditions values differ by 0.6 to 1.6 cents, all on the
large account ``sc17/A``, and are within that bound.

Stale reference files (fm-validation README): the plain ``insurance`` folders are stale for 16
locations and ``insurance_step/expected_subperils`` (written before OED peril codes) for 100 of
its 102; those locations are compared with the fresh results of the same unit cases in
``insurance_and_step``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.inputs.exposure_run import exposure_run
from perilflow.kernel.oed import OedValidationError
from tests.conftest import require_shared

KEYS = ["PortNumber", "AccNumber", "LocNumber"]
RTOL, ATOL_PER_OUTPUT = 1e-5, 0.005

# suite, expected folder, peril
CASES = [
    ("insurance", "expected", "WTC"), ("insurance", "expected_subperils", "WW2"),
    ("insurance_account", "expected", "WTC"),
    ("insurance_and_step", "expected", "WTC"), ("insurance_and_step", "expected_subperils", "WW2"),
    ("insurance_bi", "expected", "WTC"), ("insurance_bi", "expected_subperils", "WW2"),
    ("insurance_conditions", "expected", "WTC"), ("insurance_conditions", "expected_subperils", "WW2"),
    ("insurance_policy_coverage", "expected", "WTC"), ("insurance_policy_coverage", "expected_subperils", "WW2"),
    ("insurance_step", "expected", "WTC"), ("insurance_step", "expected_subperils", "WW2"),
    ("issue_1816", "expected", "WTC"), ("issue_1953_layerparticipation", "expected", "WTC"),
    ("issues", "expected", "WTC"), ("issues", "expected_subperils", "WW2"),
    ("reinsurance1", "expected", "WTC"), ("reinsurance1", "expected_subperils", "WW2"),
    ("reinsurance2", "expected", "WTC"), ("reinsurance2", "expected_subperils", "WW2"),
]

#: Locations whose expected results are stale, and where the reference's current answer is.
STALE = {
    ("insurance", "expected"): ("insurance_and_step/expected", {
        ("Q1", "58", "115"), ("Q1", "58", "116"), ("Q2", "42", "83"), ("Q2", "42", "84"), ("Q2", "59", "117"),
        ("Q2", "59", "118"), ("Q3", "2", "3"), ("Q3", "2", "4"), ("Q3", "45", "89"), ("Q3", "45", "90"),
        ("Q3", "60", "119"), ("Q3", "60", "120"), ("Q3", "61", "121"), ("Q3", "61", "122"), ("fm8", "1", "1"),
        ("fm8", "1", "2")}),
    ("insurance_step", "expected_subperils"): ("insurance_and_step/expected_subperils", None),  # None: all
}
STALE[("insurance", "expected_subperils")] = ("insurance_and_step/expected_subperils",
                                              STALE[("insurance", "expected")][1])


def read_summary(path: Path) -> pd.DataFrame:
    """A loc_summary.csv with the identifier columns as text (old files spell them in lower case)."""
    frame = pd.read_csv(path, dtype=str)
    frame.columns = [{"portnumber": "PortNumber", "accnumber": "AccNumber", "locnumber": "LocNumber"}.get(c, c)
                     for c in frame.columns]
    for column in frame.columns:
        if column.startswith("loss_") and column != "loss_factor_idx":
            frame[column] = frame[column].astype(float)
    return frame


def expected_summary(suite: str, expected: str) -> pd.DataFrame:
    """The reference's loc_summary, with stale locations replaced by the fresh results of the same unit cases."""
    frame = read_summary(require_shared(Path("fm-validation") / suite / expected / "loc_summary.csv"))
    if (suite, expected) not in STALE:
        return frame
    fresh_folder, locations = STALE[(suite, expected)]
    fresh = read_summary(require_shared(Path("fm-validation") / fresh_folder / "loc_summary.csv")).set_index(KEYS)
    keys = list(frame[KEYS].itertuples(index=False, name=None))
    stale = np.array([locations is None or key in locations for key in keys])
    losses = [c for c in frame.columns if c in ("loss_gul", "loss_il")]
    frame.loc[stale, losses] = fresh.loc[[k for k, s in zip(keys, stale, strict=True) if s], losses].to_numpy()
    return frame


def compare_summary(got: pd.DataFrame, expected: pd.DataFrame, outputs_per_location: pd.Series) -> list[str]:
    """Problems between two loc_summary frames (same locations, same order, losses within tolerance)."""
    keys = [c for c in expected.columns if c in (*KEYS, "loss_factor_idx")]
    problems = []
    if list(got.columns) != list(expected.columns):
        problems.append(f"columns {list(got.columns)} != {list(expected.columns)}")
    if got[keys].values.tolist() != expected[keys].values.tolist():
        problems.append("locations differ or are in another order")
        return problems
    allowance = ATOL_PER_OUTPUT * outputs_per_location.reindex(
        pd.MultiIndex.from_frame(got[KEYS])).to_numpy()
    for column in (c for c in expected.columns if c in ("loss_gul", "loss_il", "loss_ri")):
        diff = np.abs(got[column].to_numpy() - expected[column].to_numpy())
        bad = diff > allowance + RTOL * np.abs(expected[column].to_numpy())
        for row in np.flatnonzero(bad)[:10]:
            problems.append(f"{column} {tuple(got.loc[row, keys])}: got {got.loc[row, column]}, "
                            f"expected {expected.loc[row, column]}")
    return problems


def run_suite(suite: str, peril: str, out: Path, with_ri: bool = True) -> dict[str, Path]:
    folder = require_shared(Path("fm-validation") / suite)
    factors_file = folder / "loss_factors.csv"
    factors = pd.read_csv(factors_file)["loss_factor"].tolist() if factors_file.exists() else [1.0]
    ri = {}
    if with_ri and (folder / "ri_info.csv").exists():
        ri = {"ri_info": folder / "ri_info.csv", "ri_scope": folder / "ri_scope.csv"}
    # insurance_conditions' unit case sc16 lists location 2 twice with different TIVs; the reference
    # accepts it (the first row's TIV is used), so the run does too.
    return exposure_run(folder / "location.csv", folder / "account.csv", out, peril=peril, loss_factors=factors,
                        allow_duplicate_locations=suite == "insurance_conditions", **ri)


@pytest.mark.reference
@pytest.mark.parametrize(("suite", "expected", "peril"), CASES, ids=[f"{s}/{e}" for s, e, _ in CASES])
def test_loc_summary_matches_reference(suite: str, expected: str, peril: str, tmp_path: Path) -> None:
    written = run_suite(suite, peril, tmp_path)
    got = read_summary(written["loc_summary"])
    outputs = pd.read_csv(written["fm_summary_map"], dtype=dict.fromkeys(KEYS, str)).groupby(KEYS).size()
    problems = compare_summary(got, expected_summary(suite, expected), outputs)
    assert not problems, "\n".join(problems)


@pytest.mark.reference
@pytest.mark.parametrize("suite", ["reinsurance3", "reinsurance4"])
def test_reinsurance_suites_without_loc_summary(suite: str, tmp_path: Path) -> None:
    """These folders publish the losses per output only: compare ils.csv and rils.csv."""
    folder = require_shared(Path("fm-validation") / suite / "expected")
    written = run_suite(suite, "WTC", tmp_path)
    for name in ("ils", "rils"):
        got, exp = pd.read_csv(written[name]), pd.read_csv(folder / f"{name}.csv")
        assert got[["event_id", "output_id"]].values.tolist() == exp[["event_id", "output_id"]].values.tolist()
        assert np.allclose(got["loss"], exp["loss"], rtol=RTOL, atol=ATOL_PER_OUTPUT), name


# --------------------------------------------------------------------------- small runs without reference data

LOCATION = pd.DataFrame({
    "PortNumber": ["P", "P"], "AccNumber": ["A", "A"], "LocNumber": ["1", "2"], "CountryCode": ["GB", "GB"],
    "LocPerilsCovered": ["WTC", "WTC"], "LocCurrency": ["GBP", "GBP"], "BuildingTIV": [100.0, 200.0],
    "ContentsTIV": [10.0, 0.0], "LocDed6All": [5.0, 0.0]})
ACCOUNT = pd.DataFrame({"PortNumber": ["P"], "AccNumber": ["A"], "PolNumber": ["Pol"], "PolPerilsCovered": ["AA1"],
                        "AccCurrency": ["GBP"], "LayerLimit": [250.0], "LayerParticipation": [0.5]})


def test_small_run_writes_inputs_losses_and_summary(tmp_path: Path) -> None:
    written = exposure_run(LOCATION, ACCOUNT, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out" / "input").iterdir())
    assert names == ["coverages.csv", "fm_policytc.csv", "fm_profile.csv", "fm_programme.csv", "fm_summary_map.csv",
                     "fm_xref.csv", "gul_summary_map.csv", "items.csv", "keys.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "guls.csv", "ils.csv", "input", "loc_summary.csv"]
    summary = pd.read_csv(written["loc_summary"])
    assert summary.columns.tolist() == ["PortNumber", "AccNumber", "LocNumber", "loss_gul", "loss_il"]
    # location 1: 110 - 5 = 105, location 2: 200; account: min(305, 250) x 50% = 125, split 105:200
    assert summary["loss_gul"].tolist() == [110.0, 200.0]
    assert summary["loss_il"].tolist() == pytest.approx([125 * 105 / 305, 125 * 200 / 305])
    keys = pd.read_csv(written["keys"])
    assert keys.columns.tolist() == ["LocID", "PerilID", "CoverageTypeID", "AreaPerilID", "VulnerabilityID"]


def test_several_loss_factors_add_loss_factor_idx(tmp_path: Path) -> None:
    written = exposure_run(LOCATION, ACCOUNT, tmp_path, loss_factors=[1.0, 0.5])
    summary = pd.read_csv(written["loc_summary"])
    assert summary.columns.tolist() == ["PortNumber", "AccNumber", "LocNumber", "loss_factor_idx", "loss_gul",
                                        "loss_il"]
    assert summary["loss_factor_idx"].tolist() == [0, 1, 0, 1]
    assert summary["loss_gul"].tolist() == [110.0, 55.0, 200.0, 100.0]
    assert "loss_factor_idx" in pd.read_csv(written["ils"]).columns


def test_peril_group_keys_sub_perils(tmp_path: Path) -> None:
    location = LOCATION.assign(LocPerilsCovered="WW1")
    written = exposure_run(location, ACCOUNT, tmp_path, peril="WW2")
    assert sorted(pd.read_csv(written["keys"])["PerilID"].unique()) == ["WEC", "WTC"]
    # the deterministic event splits a coverage's TIV between the items of its perils
    assert pd.read_csv(written["guls"])["loss"].tolist() == [50.0, 5.0, 50.0, 5.0, 100.0, 100.0]
    assert pd.read_csv(written["loc_summary"])["loss_gul"].tolist() == [110.0, 200.0]


def test_uncovered_peril_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no location covers the peril"):
        exposure_run(LOCATION, ACCOUNT, tmp_path, peril="QEQ")


def test_bad_oed_stops_before_writing_anything(tmp_path: Path) -> None:
    location = LOCATION.astype({"BuildingTIV": object})
    location.loc[0, "BuildingTIV"] = "lots"
    with pytest.raises(OedValidationError, match="'lots' is not a number"):
        exposure_run(location, ACCOUNT, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_reinsurance_file_alone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give both --ri-info and --ri-scope"):
        exposure_run(LOCATION, ACCOUNT, tmp_path, ri_info=pd.DataFrame({"ReinsNumber": [1]}))

