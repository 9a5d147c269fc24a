"""The losses stage end to end on PiWind loc10: chunking never changes a byte; the worker steps agree."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from perilflow.kernel.losses import (
    chunk_events,
    generate_losses_chunk,
    generate_losses_output,
    prepare_run_directory,
)
from tests.conftest import require_shared

TABLES = ("selt", "melt", "qelt", "splt", "mplt", "qplt", "palt", "ept", "psept", "summary-info")


def piwind_run(tmp: Path, name: str, n_chunks: int, exposure: str = "loc10") -> Path:
    piwind = require_shared("piwind")
    run = tmp / name
    prepare_run_directory(piwind / "expected-inputs" / exposure, run, model_data_dir=piwind / "model_data/PiWind",
                          analysis_settings=json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json")
                                                       .read_text()),
                          model_settings=json.loads((piwind / "meta-data/model_settings.json").read_text()),
                          gul_alloc_rule=1)
    for i in range(n_chunks):
        generate_losses_chunk(run, i, n_chunks)
    return generate_losses_output(run, n_chunks)


@pytest.fixture(scope="module")
def one_chunk(tmp_path_factory) -> Path:
    return piwind_run(tmp_path_factory.mktemp("losses"), "run1", 1)


@pytest.mark.reference
def test_every_requested_output_is_written(one_chunk: Path) -> None:
    names = {p.name for p in one_chunk.iterdir()}
    for perspective in ("gul", "il", "ri"):
        for table in TABLES:
            assert f"{perspective}_S1_{table}.csv" in names


@pytest.mark.reference
@pytest.mark.parametrize("n_chunks", [3, 8])
def test_outputs_are_byte_identical_for_any_chunking(one_chunk: Path, n_chunks: int, tmp_path: Path) -> None:
    other = piwind_run(tmp_path, f"run{n_chunks}", n_chunks)
    names = sorted(p.name for p in one_chunk.iterdir())
    assert names == sorted(p.name for p in other.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(one_chunk, other, names, shallow=False)
    assert not mismatch and not errors


@pytest.mark.reference
def test_reinsurance_and_insurance_do_not_exceed_ground_up(one_chunk: Path) -> None:
    aal = {p: pd.read_csv(one_chunk / f"{p}_S1_palt.csv").set_index("SampleType")["MeanLoss"]
           for p in ("gul", "il", "ri")}
    for sample_type in (1, 2):
        assert 0 < aal["ri"][sample_type] <= aal["il"][sample_type] <= aal["gul"][sample_type]


@pytest.mark.reference
def test_worker_steps_give_the_same_outputs(one_chunk: Path, tmp_path: Path) -> None:
    piwind = require_shared("piwind")
    exe = Path(sys.executable).with_name("perilflow-worker")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "perilflow.kernel.worker"]
    run = tmp_path / "run"
    steps = [
        ("prepare", {"oasis_files_dir": str(piwind / "expected-inputs/loc10"), "run_dir": str(run),
                     "model_data_dir": str(piwind / "model_data/PiWind"),
                     "analysis_settings": str(piwind / "analysis_settings/ord_all_outputs_s10.json"),
                     "model_settings": str(piwind / "meta-data/model_settings.json"), "gul_alloc_rule": 1}),
        ("chunk", {"run_dir": str(run), "chunk_index": 1, "n_chunks": 2}),
        ("chunk", {"run_dir": str(run), "chunk_index": 0, "n_chunks": 2}),
        ("merge", {"run_dir": str(run), "n_chunks": 2}),
    ]
    for step, params in steps:
        done = subprocess.run(cmd + [step, "--params", json.dumps(params)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in one_chunk.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(one_chunk, run / "output", names, shallow=False)
    assert not mismatch and not errors


def test_worker_bad_params_exit_2() -> None:
    exe = Path(sys.executable).with_name("perilflow-worker")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "perilflow.kernel.worker"]
    done = subprocess.run(cmd + ["chunk", "--params", '{"run_dir": "/nowhere"}'], capture_output=True, text=True)
    assert done.returncode == 2
    assert "missing ['chunk_index', 'n_chunks']" in done.stderr
    versions = json.loads(subprocess.run(cmd + ["versions"], capture_output=True, text=True).stdout)
    assert {"perilflow", "numpy", "numba"} <= set(versions)


@pytest.mark.reference
def test_a_block_lets_go_of_each_perspective_once_the_next_is_computed(tmp_path: Path) -> None:
    """``_Run.perspectives`` yields ground up, insured, reinsurance; once the caller drops a
    perspective, computing the next one frees it (the block's peak holds two perspectives, not three)."""
    import gc
    import weakref

    import numpy as np

    from perilflow.kernel.losses import _Run

    piwind = require_shared("piwind")
    run_dir = tmp_path / "run"
    prepare_run_directory(piwind / "expected-inputs/loc10", run_dir, model_data_dir=piwind / "model_data/PiWind",
                          analysis_settings=json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json")
                                                       .read_text()),
                          model_settings=json.loads((piwind / "meta-data/model_settings.json").read_text()))
    run = _Run(run_dir)
    ids = next(iter(run.event_blocks(chunk_events(run.model.events, 0, 1))))
    whole = run.block(ids)
    assert list(whole) == ["gul", "il", "ri"]
    names, earlier = [], []
    for name, records in run.perspectives(ids):
        gc.collect()
        assert [ref() for ref in earlier] == [None] * len(earlier), f"{name}: an earlier perspective is held"
        assert all(np.array_equal(got, expected) for got, expected in zip(records, whole[name], strict=True))
        names.append(name)
        earlier.append(weakref.ref(records[2]))
        del records
    assert names == ["gul", "il", "ri"]


def test_chunk_events_cover_every_event_once() -> None:
    import numpy as np

    events = np.array([9, 3, 7, 1, 5, 2, 8])
    parts = [chunk_events(events, i, 3) for i in range(3)]
    assert np.array_equal(np.concatenate(parts), np.sort(events))
    with pytest.raises(ValueError, match="chunk index 3"):
        chunk_events(events, 3, 3)


ASSETS = Path(__file__).resolve().parents[1] / "assets" / "piwind_ord_loc10"


def assert_close(ref: pd.DataFrame, ours: pd.DataFrame, columns: list[str], rtol: float, what: str) -> None:
    import numpy as np

    for column in columns:
        a, b = ref[column].to_numpy(float), ours[column].to_numpy(float)
        both_nan = np.isnan(a) & np.isnan(b)
        ok = both_nan | np.isclose(b, a, rtol=rtol, atol=1e-3)
        assert ok.all(), f"{what} {column}: {np.flatnonzero(~ok)[:5]} got {b[~ok][:5]} expected {a[~ok][:5]}"


@pytest.mark.reference
@pytest.mark.parametrize("perspective", ["gul", "il", "ri"])
def test_same_answers_as_the_reference_engine(one_chunk: Path, perspective: str) -> None:
    """PiWind loc10 on the reference's own input files: ALT, EPT, PSEPT and MELT of oasislmf 2.5.8.

    The samples are bit-identical to the reference's (same generator and seeds); results differ
    only by float32 summation order, so every value matches within 1e-5 relative -- except the
    standard deviation of samples that are all equal, which is float32 noise around 0 and is
    compared with an allowance of 1e-5 of the mean.
    """
    def pair(table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        ref = pd.read_csv(ASSETS / f"{perspective}_S1_{table}.csv.gz")
        ours = pd.read_csv(one_chunk / f"{perspective}_S1_{table}.csv")
        keys = [c for c in ref.columns if ref[c].dtype.kind in "iu"]
        assert ref.shape == ours.shape and (ref[keys].to_numpy() == ours[keys].to_numpy()).all(), table
        return ref, ours

    ref, ours = pair("palt")
    assert_close(ref, ours, ["MeanLoss", "SDLoss"], 1e-5, "ALT")
    for table in ("ept", "psept"):
        ref, ours = pair(table)
        assert_close(ref, ours, ["ReturnPeriod", "Loss"], 1e-5, table.upper())
    ref, ours = pair("melt")
    assert_close(ref, ours, ["ChanceOfLoss", "MeanLoss", "MaxLoss", "FootprintExposure", "MeanImpactedExposure",
                             "MaxImpactedExposure"], 1e-5, "MELT")
    import numpy as np

    sd_gap = np.abs(ours["SDLoss"].to_numpy() - ref["SDLoss"].to_numpy())
    assert (sd_gap <= 1e-5 * ref["MeanLoss"].abs().to_numpy() + 1e-3).all()


@pytest.mark.reference
def test_deterministic_quantities_equal_the_reference_engines_at_12598_locations(tmp_path: Path) -> None:
    """PiWind loc12598, 10 samples, every ORD output: the deterministic quantities (ALT SampleType 1,
    EPT EPCalc 1, MELT SampleType 1, SELT SampleId -1, exposure columns) of the three perspectives
    within 1e-5 of oasislmf 2.5.8's (issue 4's criterion; ``benchmarks.agreement``).

    They are float32 sums over thousands of items: they meet the criterion only because our records
    come in the reference's order (ADR 0008); in item-id order they were 8.9e-5 off.
    """
    from benchmarks.agreement import compare_deterministic

    output = piwind_run(tmp_path, "loc12598", 1, exposure="loc12598")
    result = compare_deterministic(output, Path(__file__).resolve().parents[1] / "assets" / "piwind_ord_loc12598")
    assert result["tables"] == 12
    assert result["within"], result
