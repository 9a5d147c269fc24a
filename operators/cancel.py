"""Cancel an analysis run: stop every task, leave nothing running, remove temporary storage.

Marking a DAG run failed kills its running task processes, but its teardown (cleanup) is
skipped and no callback fires (airflow3-notes.md section 4). So :func:`cancel_run`:

1. sets every unfinished task instance of the run to ``skipped`` (sub-task status
   CANCELLED); the task supervisors see it on their next heartbeat and stop the task, whose
   ``on_kill`` stops the model step (local process group, or the pod);
2. marks the run ``failed``, so nothing is scheduled afterwards;
3. removes the run's temporary files itself, as cleanup would have;
4. waits (bounded) until no task instance of the run is running.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from perilflow.operators import storage
from perilflow.operators.airflow_api import UNFINISHED, AirflowApi, AirflowApiError
from perilflow.operators.config import PlatformConfig

PLAN_TASKS = ("prepare-input-generation-params", "prepare-losses-generation-params")


def _cleanup_plans(api: AirflowApi, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    plans = []
    for task_id in PLAN_TASKS:
        path = (f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{quote(task_id, safe='')}/xcomEntries/cleanup")
        try:
            entry = api.call("GET", path, params={"deserialize": True})
        except AirflowApiError:  # the task is not in this DAG, or never ran
            continue
        value = entry.get("value")
        if isinstance(value, dict) and value.get("folder"):
            plans.append(value)
    return plans


def cancel_run(api: AirflowApi, dag_id: str, run_id: str, cfg: PlatformConfig | None = None, *,
               timeout: float = 10.0) -> dict[str, Any]:
    """Cancel one run; returns what was stopped and removed, and whether anything is still running."""
    cfg = cfg or PlatformConfig.from_env()
    stopped = []
    for ti in api.task_instances(dag_id, run_id):
        if ti["state"] in UNFINISHED:
            api.set_task_state(dag_id, run_id, ti["task_id"], ti["map_index"], "skipped")
            stopped.append((ti["task_id"], ti["map_index"]))
    api.set_run_state(dag_id, run_id, "failed")
    removed = []
    if not cfg.keep_remote_data:
        for plan in _cleanup_plans(api, dag_id, run_id):
            removed += [f"{plan['folder']}/{name}" for name in plan["temporary"]
                        if storage.remove(cfg, f"{plan['folder']}/{name}")]
    deadline = time.monotonic() + timeout
    running: list[tuple[str, int]] = []
    while True:
        running = [(ti["task_id"], ti["map_index"]) for ti in api.task_instances(dag_id, run_id)
                   if ti["state"] == "running"]
        if not running or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    return {"stopped": stopped, "removed": removed, "still_running": running}
