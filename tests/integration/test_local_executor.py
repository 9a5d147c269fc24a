"""LocalExecutor on PostgreSQL: runs triggered through the REST API and the CLI, failure, cancel, priority.

One platform (api-server, scheduler, dag-processor; parallelism 4) serves every test of the
module. Model steps run as real ``perilflow-worker`` processes (local backend); a wrapper
entry point (``model.worker_command``) makes chunks sleep or fail where a test needs it.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.conftest import assert_same_folder, extract, require_services
from tests.integration.harness import (
    FINISHED_TI,
    AirflowPlatform,
    direct_losses,
    losses_conf,
    piwind_conf,
    storage_path,
    wrapper_worker,
)
from tests.ord_checks import assert_alt_matches_reference

pytestmark = [pytest.mark.integration, pytest.mark.reference, pytest.mark.slow]

GENERATE_AND_RUN = "perilflow_generate_and_run"
LOSSES = "perilflow_losses_generation"
ORD_FILES = [f"{p}_S1_{kind}.csv" for p in ("gul", "il", "ri") for kind in ("ept", "melt", "palt", "psept")]


def when(text: str | None) -> datetime:
    assert text, "missing timestamp"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def platform(piwind):
    require_services()
    with AirflowPlatform(executor="LocalExecutor", parallelism=4, name="it") as started:
        yield started


@pytest.fixture(scope="module")
def reference(platform, piwind, tmp_path_factory) -> dict:
    """generate_and_run on PiWind loc10 triggered through the REST API, 3 lookup and 3 loss chunks."""
    conf = piwind_conf(piwind, 101, chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 3})
    t0 = time.monotonic()
    run_id = platform.trigger(GENERATE_AND_RUN, conf)
    run = platform.wait_run(GENERATE_AND_RUN, run_id, timeout=240)
    elapsed = time.monotonic() - t0
    tis = platform.tis(GENERATE_AND_RUN, run_id)
    record = platform.xcom(GENERATE_AND_RUN, run_id, "record-losses-files") if run["state"] == "success" else None
    inputs = platform.xcom(GENERATE_AND_RUN, run_id, "record-input-files") if run["state"] == "success" else None
    tmp = tmp_path_factory.mktemp("reference")
    return {"conf": conf, "run_id": run_id, "run": run, "tis": tis, "record": record, "inputs": inputs,
            "elapsed": elapsed, "output": extract(record["output_file"], tmp / "output") if record else None}


def test_rest_trigger_runs_generate_and_run_with_mapped_chunks(platform, reference) -> None:
    run, tis = reference["run"], reference["tis"]
    assert run["state"] == "success", (sorted((k, ti["state"]) for k, ti in tis.items()), platform.logs())
    assert run["triggered_by"] == "rest_api"
    lookups = sorted((k[1], ti["rendered_map_index"], ti["state"]) for k, ti in tis.items()
                     if k[0] == "prepare-keys-file")
    assert lookups == [(i, f"lookup chunk {i + 1}/3", "success") for i in range(3)]
    chunks = sorted((k[1], ti["rendered_map_index"], ti["state"]) for k, ti in tis.items()
                    if k[0] == "generate-losses-chunk")
    assert chunks == [(i, f"chunk {i + 1}/3", "success") for i in range(3)]
    assert tis[("generate-losses", -1)]["state"] == "skipped"  # run_mode v2
    for task_id in ("cleanup-input-generation", "cleanup-losses-generation", "record-input-files",
                    "record-losses-files", "generate-losses-output", "write-input-files"):
        assert tis[(task_id, -1)]["state"] == "success", task_id
    # every model step ran in the LocalExecutor's task processes on this machine
    assert {ti["hostname"] for ti in tis.values() if ti["state"] == "success"} and reference["elapsed"] < 240


def test_rest_run_outputs_match_the_reference_engine(reference) -> None:
    """The ORD files are all there and the ALT equals oasislmf's for PiWind loc10 (1e-5)."""
    output = reference["output"]
    assert output is not None
    assert set(ORD_FILES) <= {p.name for p in output.iterdir()}
    assert_alt_matches_reference(output)


def test_rest_run_outputs_equal_a_direct_kernel_run(platform, piwind, reference, tmp_path) -> None:
    """The same losses steps run without Airflow (one chunk) give the same output.tar.gz contents."""
    assert reference["record"] is not None
    uri = f"file://{tmp_path / 'direct' / 'output.tar.gz'}"
    direct_losses(reference["inputs"]["input_file"], reference["conf"], 1, uri, piwind)
    assert_same_folder(reference["output"], extract(uri, tmp_path / "out"))


def test_cli_trigger_runs_losses_generation(platform, reference, tmp_path) -> None:
    """`airflow dags trigger --conf` on the inputs of the REST run: same outputs with 2 chunks, priority 6 applied."""
    assert reference["inputs"] is not None
    conf = losses_conf(reference["conf"], reference["inputs"]["input_file"], analysis_id=102, priority=6,
                       chunking={"fixed_analysis_chunks": 2})
    run_id = f"cli-{secrets.token_hex(4)}"
    result = platform.airflow("dags", "trigger", LOSSES, "--run-id", run_id, "--conf", json.dumps(conf))
    assert run_id in result.stdout
    run = platform.wait_run(LOSSES, run_id, timeout=180)
    tis = platform.tis(LOSSES, run_id)
    assert run["state"] == "success", sorted((k, ti["state"]) for k, ti in tis.items())
    assert run["triggered_by"] == "cli"
    assert sorted(ti["rendered_map_index"] for k, ti in tis.items() if k[0] == "generate-losses-chunk") == \
        ["chunk 1/2", "chunk 2/2"]
    assert {ti["priority_weight"] for ti in tis.values()} == {6}  # the cluster policy, CLI runs included
    record = platform.xcom(LOSSES, run_id, "record-losses-files")
    assert_same_folder(reference["output"], extract(record["output_file"], tmp_path / "out"))


def test_bad_conf_is_refused_by_rest_and_cli(platform, reference) -> None:
    conf = {**reference["conf"], "priority": 11}
    reply = platform.request("POST", f"/api/v2/dags/{GENERATE_AND_RUN}/dagRuns", check=False,
                             json={"dag_run_id": "bad-rest", "logical_date": None, "conf": conf})
    assert reply.status_code == 400, reply.text
    assert "priority" in reply.json()["detail"], reply.text
    bad_model = {**reference["conf"], "model": {"model_data_dir": "model_data/PiWind"}}  # no model id
    result = platform.airflow("dags", "trigger", GENERATE_AND_RUN, "--run-id", "bad-cli", "--conf",
                              json.dumps(bad_model), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "model" in message and "'id' is a required property" in message, message[-2000:]
    runs = platform.request("GET", f"/api/v2/dags/{GENERATE_AND_RUN}/dagRuns").json()["dag_runs"]
    assert not {"bad-rest", "bad-cli"} & {r["dag_run_id"] for r in runs}


def test_a_chunk_that_always_fails_stops_its_siblings(platform, reference) -> None:
    """Chunk 1 of 4 fails on both attempts; the other chunks (sleeping 40 s) are skipped within seconds.

    Four chunks for the four executor slots: a retry needs a free slot, and with more chunks the
    sleeping ones would hold every slot until they end.
    """
    worker = wrapper_worker(platform.home / "bin" / "failing", "failing-worker",
                            sleep={"generate-losses-chunk": 40}, fail_chunks=[1])
    conf = losses_conf(reference["conf"], reference["inputs"]["input_file"], analysis_id=103,
                       model={**reference["conf"]["model"], "worker_command": [str(worker)]},
                       chunking={"fixed_analysis_chunks": 4})
    run_id = platform.trigger(LOSSES, conf)
    run = platform.wait_run(LOSSES, run_id, timeout=150)
    tis = platform.tis(LOSSES, run_id)
    states = {k: ti["state"] for k, ti in tis.items()}
    assert run["state"] == "failed", states
    failed = tis[("generate-losses-chunk", 1)]
    assert failed["state"] == "failed" and failed["try_number"] == 2  # PERILFLOW_RETRIES=2 attempts
    assert (Path(worker).parent / "attempts-1").read_text() == "2"
    siblings = [ti for k, ti in tis.items() if k[0] == "generate-losses-chunk" and k[1] != 1]
    assert [ti["state"] for ti in siblings] == ["skipped"] * 3, states
    # they were running (sleeping 40 s before their real work) and were stopped, not left to finish
    assert all(ti["start_date"] and (when(ti["end_date"]) - when(ti["start_date"])).total_seconds() < 30
               for ti in siblings), [(ti["start_date"], ti["end_date"]) for ti in siblings]
    final_failure = when(failed["end_date"])
    lag = max((when(ti["end_date"]) - final_failure).total_seconds() for ti in siblings)
    assert lag < 8, f"siblings stopped {lag:.1f} s after the final failure"
    assert states[("generate-losses-output", -1)] == "upstream_failed"
    assert states[("record-losses-files", -1)] == "upstream_failed"
    assert states[("cleanup-losses-generation", -1)] == "success"
    plan = platform.xcom(LOSSES, run_id, "prepare-losses-generation-params", key="cleanup")
    folder = storage_path(plan["folder"])
    traceback = (folder / "traceback.txt").read_text()
    assert "generate-losses-chunk-1" in traceback and "simulated failure of chunk 1" in traceback
    # kept for a resume (tasks.cleanup); the stopped siblings wrote no work file
    assert (folder / "run_directory.tar.gz").exists() and not list(folder.glob("work-*"))
    deadline = time.monotonic() + 10
    while platform.strays(str(worker.parent)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not platform.strays(str(worker.parent))


def test_cancel_mid_run_leaves_nothing_running(platform, reference, monkeypatch) -> None:
    from perilflow.operators.cancel import cancel_run
    from perilflow.operators.config import PlatformConfig

    worker = wrapper_worker(platform.home / "bin" / "sleepy", "sleepy-worker", sleep={"generate-losses-chunk": 120})
    conf = losses_conf(reference["conf"], reference["inputs"]["input_file"], analysis_id=104,
                       model={**reference["conf"]["model"], "worker_command": [str(worker)]},
                       chunking={"fixed_analysis_chunks": 4})
    run_id = platform.trigger(LOSSES, conf)
    platform.wait_tis(LOSSES, run_id, lambda tis: sum(ti["state"] == "running" for k, ti in tis.items()
                                                      if k[0] == "generate-losses-chunk") >= 2, timeout=120)
    deadline = time.monotonic() + 30
    while len(platform.strays(str(worker))) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(platform.strays(str(worker))) >= 2, "the chunks' worker processes did not start"
    plan = platform.xcom(LOSSES, run_id, "prepare-losses-generation-params", key="cleanup")
    folder = storage_path(plan["folder"])
    assert (folder / "run_directory.tar.gz").exists()

    for key, value in platform.perilflow_env().items():
        monkeypatch.setenv(key, value)
    t0 = time.monotonic()
    with platform.api() as api:
        report = cancel_run(api, LOSSES, run_id, PlatformConfig.from_env())
    cancelled = time.monotonic()
    assert report["stopped"] and f"{plan['folder']}/run_directory.tar.gz" in report["removed"]
    while (platform.strays(str(worker.parent)) or platform.strays(plan["folder"])) and \
            time.monotonic() < cancelled + 10:
        time.sleep(0.25)
    left = [p.info["cmdline"][:3] for p in platform.strays(str(worker.parent)) + platform.strays(plan["folder"])]
    assert not left, f"still running {time.monotonic() - t0:.1f} s after cancel: {left}"
    tis = platform.tis(LOSSES, run_id)
    assert all(ti["state"] in FINISHED_TI for ti in tis.values()), sorted((k, ti["state"]) for k, ti in tis.items())
    assert platform.run(LOSSES, run_id)["state"] == "failed"
    assert not (folder / "run_directory.tar.gz").exists() and not list(folder.glob("work-*"))

    # the platform is free again: a new run afterwards succeeds
    again = platform.trigger(LOSSES, losses_conf(reference["conf"], reference["inputs"]["input_file"],
                                                 analysis_id=105))
    assert platform.wait_run(LOSSES, again, timeout=120)["state"] == "success"


def test_priority_8_run_overtakes_a_queued_priority_4_run(platform, reference) -> None:
    """Model steps share a 1-slot pool (conf.model.pool): the later priority-8 run's chunks go first."""
    pool = f"it_one_slot_{secrets.token_hex(3)}"
    platform.request("POST", "/api/v2/pools", json={"name": pool, "slots": 1, "include_deferred": False,
                                                    "description": "integration test: priority"})
    model = {**reference["conf"]["model"], "pool": pool}
    low = platform.trigger(LOSSES, losses_conf(reference["conf"], reference["inputs"]["input_file"],
                                               analysis_id=106, priority=4, model=model,
                                               chunking={"fixed_analysis_chunks": 5}))
    # wait until the first low chunk has the slot and the other four wait for it
    platform.wait_tis(LOSSES, low, lambda tis: sum(ti["state"] in ("running", "success") for k, ti in tis.items()
                                                   if k[0] == "generate-losses-chunk") >= 1, timeout=120)
    high = platform.trigger(LOSSES, losses_conf(reference["conf"], reference["inputs"]["input_file"],
                                                analysis_id=107, priority=8, model=model,
                                                chunking={"fixed_analysis_chunks": 2}))
    assert platform.wait_run(LOSSES, high, timeout=180)["state"] == "success"
    assert platform.wait_run(LOSSES, low, timeout=180)["state"] == "success"
    low_tis, high_tis = platform.tis(LOSSES, low), platform.tis(LOSSES, high)
    assert {ti["priority_weight"] for ti in low_tis.values()} == {4}
    assert {ti["priority_weight"] for ti in high_tis.values()} == {8}
    model_steps = [ti for ti in [*low_tis.values(), *high_tis.values()] if ti["start_date"] and
                   ti["task_id"].startswith(("prepare-losses-generation-directory", "generate-losses"))]
    assert {ti["pool"] for ti in model_steps} == {pool}
    # the pool ran one model step at a time
    spans = sorted((when(ti["start_date"]), when(ti["end_date"])) for ti in model_steps)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), "the 1-slot pool ran steps at once"

    def chunk_starts(tis):
        return sorted(when(ti["start_date"]) for k, ti in tis.items() if k[0] == "generate-losses-chunk")

    low_starts, high_starts = chunk_starts(low_tis), chunk_starts(high_tis)
    # low chunks that had not started when the high run's chunks began were waiting: all start after them
    remaining = [t for t in low_starts if t > high_starts[0]]
    assert len(remaining) >= 2, (low_starts, high_starts)
    assert min(remaining) > max(high_starts), (low_starts, high_starts)
    assert when(platform.run(LOSSES, high)["end_date"]) < when(platform.run(LOSSES, low)["end_date"])
