"""generate-files on PiWind: the reference's MDK settings give the reference's Oasis input files.

Item, coverage and output ids are numbered in the order the keys come out of the lookup.
The reference's lookup emits them in an order of its own (location chunks, spatial-join
order); ours emits them sorted by location, peril and coverage. So files are compared by
what each row *is* -- (location, peril, coverage type, building[, layer]) -- and the fm files
by the losses they give, not by id.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from perilflow.kernel.fm.run import fm_run
from perilflow.kernel.inputs.generate import generate_files
from tests.conftest import require_shared

ITEM_KEY = ["loc_id", "peril_id", "coverage_type_id", "building_id"]
OUTPUT_KEY = ITEM_KEY + ["layer_id"]


def sorted_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].sort_values(columns).reset_index(drop=True)


def assert_same(got: pd.DataFrame, expected: pd.DataFrame, columns: list[str], what: str) -> None:
    pd.testing.assert_frame_equal(sorted_frame(got, columns), sorted_frame(expected, columns), check_dtype=False,
                                  rtol=1e-6, obj=what)


def items_by_key(folder: Path) -> pd.DataFrame:
    items = pd.read_csv(folder / "items.csv")
    cov = pd.read_csv(folder / "coverages.csv")
    gsm = pd.read_csv(folder / "gul_summary_map.csv")[["item_id"] + ITEM_KEY]
    frame = items.merge(cov, on="coverage_id").merge(gsm, on="item_id")
    corr = folder / "correlations.csv"
    if corr.exists():
        frame = frame.merge(pd.read_csv(corr).drop(columns=["source_item_id"], errors="ignore"), on="item_id")
    return frame


def losses_by_key(folder: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    written = fm_run(folder, out, [0.3, 1.0])
    fsm = pd.read_csv(folder / "fm_summary_map.csv")[["output_id"] + OUTPUT_KEY]
    ils = pd.read_csv(written["ils"]).merge(fsm, on="output_id")
    rils = pd.read_csv(written["rils"]).merge(fsm, on="output_id")
    return ils, rils


@pytest.mark.reference
@pytest.mark.parametrize("size", ["loc10", "loc12598"])
def test_piwind_inputs_equal_the_reference(size: str, tmp_path: Path) -> None:
    piwind = require_shared("piwind")
    written = generate_files(piwind / f"oasislmf_{size}.json", tmp_path / "ours", file_format="csv")
    ours, ref = tmp_path / "ours", piwind / "expected-inputs" / size

    keys = ["LocID", "PerilID", "CoverageTypeID", "AreaPerilID", "VulnerabilityID"]
    assert_same(pd.read_csv(ours / "keys.csv"), pd.read_csv(ref / "keys.csv"), keys, "keys.csv")
    assert len(pd.read_csv(ours / "keys-errors.csv")) == len(pd.read_csv(ref / "keys-errors.csv"))

    item_columns = ITEM_KEY + ["areaperil_id", "vulnerability_id", "group_id", "tiv", "peril_correlation_group",
                               "damage_correlation_value", "hazard_group_id", "hazard_correlation_value"]
    assert_same(items_by_key(ours), items_by_key(ref), item_columns, "items + coverages + correlations")
    gsm_columns = ["loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id", "tiv",
                   "building_id"]
    assert_same(pd.read_csv(ours / "gul_summary_map.csv"), pd.read_csv(ref / "gul_summary_map.csv"), gsm_columns,
                "gul_summary_map")
    fsm_columns = gsm_columns + ["layer_id", "PolNumber", "acc_idx"]
    assert_same(pd.read_csv(ours / "fm_summary_map.csv"), pd.read_csv(ref / "fm_summary_map.csv"), fsm_columns,
                "fm_summary_map")
    for name in ("fm_programme.csv", "fm_policytc.csv", "fm_xref.csv", "RI_1/fm_programme.csv",
                 "RI_1/fm_xref.csv"):
        assert len(pd.read_csv(ours / name)) == len(pd.read_csv(ref / name)), name
    assert_same(pd.read_csv(ours / "fm_profile.csv"), pd.read_csv(ref / "fm_profile.csv"),
                list(pd.read_csv(ref / "fm_profile.csv").columns), "fm_profile")

    # the fm and RI files: the same losses for the same (location, peril, coverage, building, layer)
    our_il, our_ri = losses_by_key(ours, tmp_path / "run_ours")
    ref_il, ref_ri = losses_by_key(ref, tmp_path / "run_ref")
    loss_columns = OUTPUT_KEY + ["loss_factor_idx", "loss"]
    assert_same(our_il, ref_il, loss_columns, "ils")
    assert_same(our_ri, ref_ri, loss_columns, "rils")
    assert written["ri_layers"].exists()


def test_config_without_a_lookup_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loc.csv").write_text("PortNumber,AccNumber,LocNumber\n1,1,1\n")
    (tmp_path / "acc.csv").write_text("PortNumber,AccNumber,PolNumber\n1,1,1\n")
    (tmp_path / "oasislmf.json").write_text('{"oed_location_csv": "loc.csv", "oed_accounts_csv": "acc.csv"}')
    with pytest.raises(ValueError, match="lookup_config_json"):
        generate_files(tmp_path / "oasislmf.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()
