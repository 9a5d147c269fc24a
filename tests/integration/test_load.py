"""Load (issue 8): 100 analyses submitted at once, mixed priorities, on a platform with two slots.

A real Airflow (api-server, scheduler, dag-processor, LocalExecutor with ``parallelism`` 2 on
a fresh PostgreSQL database) runs 100 losses-only runs of PiWind loc10 (run mode v1: one
model step per run, one sample), triggered back to back through Airflow's REST API as the
Perilflow API triggers them (logical date = submission time), with priorities 1-10 in a mixed order. All
must succeed, and the scheduler must start them by priority (the cluster policy's
``priority_weight``), then by submission. Reads ../shared/piwind. ``PERILFLOW_IT_LOAD_RUNS``
sets another count (100 runs are ~600 task processes: 11-14 minutes on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

import pytest

from tests.integration.conftest import require_services
from tests.integration.harness import AirflowPlatform, losses_conf, piwind_conf

pytestmark = [pytest.mark.integration, pytest.mark.reference, pytest.mark.slow]

INPUT_GENERATION = "perilflow_input_generation"
LOSSES = "perilflow_losses_generation"
RUNS = int(os.environ.get("PERILFLOW_IT_LOAD_RUNS", "100"))
FIRST_TASK = "prepare-losses-generation-params"
#: a first task counts as "in order" if it was queued at most this long after one it should have preceded:
#: the scheduler queues a batch of task instances per loop (2 s heartbeat here) and two slots free at once
SLACK_S = 3.0


def when(text: str | None) -> datetime:
    assert text, "missing timestamp"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def priorities(n: int) -> list[int]:
    """1-10 in a mixed order (each about n/10 times; consecutive submissions differ)."""
    return [(i * 7 + i // 10) % 10 + 1 for i in range(n)]


@pytest.fixture(scope="module")
def platform(piwind):
    require_services()
    with AirflowPlatform(executor="LocalExecutor", parallelism=2, name="load") as started:
        yield started


@pytest.fixture(scope="module")
def load(platform, piwind) -> dict[str, Any]:
    """Input generation once, then the 100 losses runs, submitted at once; waits until every run ends."""
    conf = piwind_conf(piwind, 300, chunking={"fixed_lookup_chunks": 1})
    inputs_run = platform.trigger(INPUT_GENERATION, conf)
    assert platform.wait_run(INPUT_GENERATION, inputs_run, timeout=180)["state"] == "success"
    input_file = platform.xcom(INPUT_GENERATION, inputs_run, "record-input-files")["input_file"]
    settings = {**conf["analysis_settings"], "number_of_samples": 1}
    submitted = []
    t0 = time.monotonic()
    for i, priority in enumerate(priorities(RUNS)):
        run_conf = losses_conf(conf, input_file, analysis_id=1000 + i, priority=priority, run_mode="v1",
                               analysis_settings=settings)
        submitted.append((platform.trigger(LOSSES, run_conf, run_id=f"load-{i:03d}"), priority))
    submit_s = time.monotonic() - t0
    deadline = time.monotonic() + 60 + RUNS * 12
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        listed = platform.request("GET", f"/api/v2/dags/{LOSSES}/dagRuns", params={"limit": 1000}).json()
        runs = {r["dag_run_id"]: r for r in listed["dag_runs"] if r["dag_run_id"].startswith("load-")}
        if len(runs) == RUNS and all(r["state"] in ("success", "failed") for r in runs.values()):
            break
        platform._check_alive()
        time.sleep(3)
    elapsed = time.monotonic() - t0
    first = {}
    for run_id, _ in submitted:
        ti = platform.request("GET", f"/api/v2/dags/{LOSSES}/dagRuns/{run_id}/taskInstances/{FIRST_TASK}").json()
        first[run_id] = ti
    return {"submitted": submitted, "runs": runs, "first": first, "elapsed": elapsed, "submit_s": submit_s}


def test_all_100_runs_complete(load) -> None:
    runs = load["runs"]
    assert len(runs) == RUNS, f"{RUNS - len(runs)} runs lost"
    states = {run_id: r["state"] for run_id, r in runs.items()}
    assert set(states.values()) == {"success"}, {k: v for k, v in states.items() if v != "success"}
    print(f"\n{RUNS} runs submitted in {load['submit_s']:.1f} s, all done {load['elapsed']:.0f} s after the first")  # noqa: T201 - the figure for the note


def test_priority_weights_follow_the_runs(load) -> None:
    assert {run_id: load["first"][run_id]["priority_weight"] for run_id, _ in load["submitted"]} == \
        dict(load["submitted"])


def candidates(load: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's first task: priority, submission index, when it became ``scheduled`` and when ``queued``."""
    order = {run_id: i for i, (run_id, _) in enumerate(load["submitted"])}
    return [{"run": run_id, "priority": priority, "submitted": order[run_id],
             "scheduled": when(load["first"][run_id]["scheduled_when"]),
             "queued": when(load["first"][run_id]["queued_when"])} for run_id, priority in load["submitted"]]


def out_of_order(tasks: list[dict[str, Any]], should_precede) -> list[tuple[Any, ...]]:
    """Pairs (a, b) where b should have gone first: b was already scheduled (waiting for a slot) when the
    scheduler queued a, yet b was queued more than ``SLACK_S`` after a.

    A run whose first task was not scheduled yet when a was queued is no witness: its DAG run had
    not been looked at (the scheduler examines a batch of runs per loop), or not been submitted.
    """
    return [(a["run"], a["priority"], b["run"], b["priority"], round((b["queued"] - a["queued"]).total_seconds(), 1))
            for a in tasks for b in tasks if should_precede(b, a) and b["scheduled"] <= a["queued"]
            and (b["queued"] - a["queued"]).total_seconds() > SLACK_S]


def test_start_order_follows_priority(load) -> None:
    """Of two runs waiting for a slot, the higher priority's first task is queued first (``SLACK_S`` tolerance)."""
    tasks = candidates(load)
    witnessed = sum(b["priority"] > a["priority"] and b["scheduled"] <= a["queued"] for a in tasks for b in tasks)
    assert witnessed >= len(tasks) * 5, f"only {witnessed} pairs of a waiting higher and a queued lower priority"
    wrong = out_of_order(tasks, lambda b, a: b["priority"] > a["priority"])
    assert not wrong, f"{len(wrong)} pairs out of order (run, priority, queued before, its priority, seconds " \
                      f"later): {json.dumps(wrong[:20])}"


def test_equal_priorities_start_in_submission_order(load) -> None:
    """Of two runs of one priority waiting for a slot, the one submitted first starts first: the scheduler
    breaks priority ties by logical date, which the API sets to the submission time."""
    wrong = out_of_order(candidates(load),
                         lambda b, a: b["priority"] == a["priority"] and b["submitted"] < a["submitted"])
    assert not wrong, f"{len(wrong)} pairs out of order (run, priority, queued before, its priority, seconds " \
                      f"later): {json.dumps(wrong[:20])}"
