"""benchmarks.agreement: how the losses benchmark compares perilflow's ORD outputs with the reference's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.agreement import (
    compare_deterministic,
    compare_ord_outputs,
    keep_deterministic,
    main,
    relative_difference,
)


def write_outputs(folder: Path, alt_mean: tuple[float, float], ept_loss: tuple[float, float],
                  exposure: float = 1000.0) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"SummaryId": [1, 1], "SampleType": [1, 2], "MeanLoss": alt_mean, "SDLoss": [5.0, 6.0]}) \
        .to_csv(folder / "gul_S1_palt.csv", index=False)
    pd.DataFrame({"SummaryId": [1, 1, 1, 1], "EPCalc": [1, 1, 2, 2], "EPType": [1, 1, 1, 1],
                  "ReturnPeriod": [1000.0, 5.0, 1000.0, 5.0], "Loss": [ept_loss[0], 1.0, ept_loss[1], 1.0]}) \
        .to_csv(folder / "gul_S1_ept.csv", index=False)
    pd.DataFrame({"EventId": [1, 1], "SummaryId": [1, 1], "SampleId": [-1, 1], "Loss": [50.0, 60.0],
                  "ImpactedExposure": [exposure, exposure]}).to_csv(folder / "gul_S1_selt.csv", index=False)
    pd.DataFrame({"SummaryId": [1], "Value": [1.0]}).to_csv(folder / "gul_S1_summary-info.csv", index=False)
    return folder


def test_identical_outputs_agree_exactly(tmp_path: Path) -> None:
    ref = write_outputs(tmp_path / "ref", (100.0, 90.0), (500.0, 480.0))
    ours = write_outputs(tmp_path / "ours", (100.0, 90.0), (500.0, 480.0))
    result = compare_ord_outputs(ours, ref)
    assert result["tables"] == 3  # summary-info is not compared
    assert all(result[k]["max"] == 0.0 and result[k]["within"] for k in ("deterministic", "sampled_aal",
                                                                        "sampled_ept_10_1000"))
    assert main([str(ours), str(ref)]) == 0


def test_each_criterion_sees_its_own_rows(tmp_path: Path) -> None:
    ref = write_outputs(tmp_path / "ref", (100.0, 90.0), (500.0, 480.0))
    # sampled AAL 0.4% off (within 0.5%), sampled EPT at 1000 years 3% off (over 2%), a TIV column 2e-5 off
    ours = write_outputs(tmp_path / "ours", (100.0, 90.36), (500.0, 494.4), exposure=1000.02)
    result = compare_ord_outputs(ours, ref)
    assert result["sampled_aal"]["max"] == pytest.approx(0.004) and result["sampled_aal"]["within"]
    assert result["sampled_ept_10_1000"]["max"] == pytest.approx(0.03) and not result["sampled_ept_10_1000"]["within"]
    assert result["deterministic"]["max"] == pytest.approx(2e-5) and not result["deterministic"]["within"]
    assert main([str(ours), str(ref)]) == 1


def test_rows_that_do_not_match_are_an_error(tmp_path: Path) -> None:
    ref = write_outputs(tmp_path / "ref", (100.0, 90.0), (500.0, 480.0))
    ours = write_outputs(tmp_path / "ours", (100.0, 90.0), (500.0, 480.0))
    pd.DataFrame({"SummaryId": [1, 2], "SampleType": [1, 2], "MeanLoss": [1.0, 2.0], "SDLoss": [0.0, 0.0]}) \
        .to_csv(ours / "gul_S1_palt.csv", index=False)
    with pytest.raises(ValueError, match="gul_S1_palt.csv: rows differ"):
        compare_ord_outputs(ours, ref)


def test_relative_difference_floors_at_one_unit_and_ignores_shared_nans() -> None:
    rel = relative_difference(np.array([1e-4, np.nan, 200.0]), np.array([0.0, np.nan, 100.0]))
    assert rel.tolist() == [1e-4, 0.0, 1.0]


def test_kept_deterministic_rows_judge_a_run_like_the_whole_outputs(tmp_path: Path) -> None:
    ref = write_outputs(tmp_path / "ref", (100.0, 90.0), (500.0, 480.0))
    kept = keep_deterministic(ref, tmp_path / "kept")
    assert sorted(p.name for p in kept) == ["gul_S1_ept.csv.gz", "gul_S1_palt.csv.gz", "gul_S1_selt.csv.gz"]
    assert pd.read_csv(tmp_path / "kept" / "gul_S1_ept.csv.gz")["EPCalc"].tolist() == [1, 1]
    same = compare_deterministic(write_outputs(tmp_path / "same", (100.0, 91.0), (500.0, 400.0)), tmp_path / "kept")
    assert same["tables"] == 3 and same["max"] == 0.0 and same["within"]   # sampled rows are not compared
    # the mean ALT 2e-5 off: over, as compare_ord_outputs says of the whole outputs
    off = write_outputs(tmp_path / "off", (100.002, 90.0), (500.0, 480.0))
    result = compare_deterministic(off, tmp_path / "kept")
    assert result["max"] == pytest.approx(2e-5) and not result["within"]
    assert not compare_ord_outputs(off, ref)["deterministic"]["within"]
    pd.DataFrame({"EventId": [2], "SummaryId": [1], "SampleId": [-1], "Loss": [50.0], "ImpactedExposure": [1.0]}) \
        .to_csv(off / "gul_S1_selt.csv", index=False)
    with pytest.raises(ValueError, match=r"gul_S1_selt.csv \(deterministic rows\): rows differ"):
        compare_deterministic(off, tmp_path / "kept")


def test_an_exposure_column_of_a_sampled_row_is_not_deterministic(tmp_path: Path) -> None:
    ref = write_outputs(tmp_path / "ref", (100.0, 90.0), (500.0, 480.0))
    ours = write_outputs(tmp_path / "ours", (100.0, 90.0), (500.0, 480.0))
    # SampleId 1's impacted exposure (the exposure of the items with loss in that sample) 2e-5 off
    pd.DataFrame({"EventId": [1, 1], "SummaryId": [1, 1], "SampleId": [-1, 1], "Loss": [50.0, 60.0],
                  "ImpactedExposure": [1000.0, 1000.02]}).to_csv(ours / "gul_S1_selt.csv", index=False)
    result = compare_ord_outputs(ours, ref)
    assert result["deterministic"]["max"] == 0.0 and result["deterministic"]["within"]
    assert result["sampled_other"]["max"] == pytest.approx(2e-5)
