"""Scheduled batch runs: analyses flagged with a cron schedule are re-run, each as its own run.

The schedules live in the Airflow Variable ``perilflow_schedules`` (the API keeps it up to
date when a user sets or clears an analysis's schedule), a JSON list of::

    {"name": "nightly-42", "cron": "0 2 * * *", "dag_id": "perilflow_generate_and_run", "conf": {...}}

The ``perilflow_batch`` DAG wakes every ``PERILFLOW_BATCH_CRON`` (default every 15 minutes)
and triggers one run per fire time of each schedule that fell in its data interval. Run ids
are ``scheduled__<name>__<fire time>``, so a re-run of the batch interval never starts an
analysis twice.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Any

from perilflow.operators.runconf import DAG_IDS, TAG

BATCH = "perilflow_batch"
VARIABLE = "perilflow_schedules"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class ScheduleError(ValueError):
    """A malformed schedule entry (the message names the entry, the field and the fix)."""


def check_schedule(entry: Any, index: int = 0) -> dict[str, Any]:
    from croniter import croniter

    where = f"{VARIABLE}[{index}]"
    if not isinstance(entry, dict):
        raise ScheduleError(f"{where}: expected an object with name, cron, dag_id, conf")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScheduleError(f"{where}.name {name!r}: use 1-100 letters, digits, '.', '_' or '-'")
    cron = entry.get("cron")
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ScheduleError(f"{where}.cron {cron!r}: not a cron expression; e.g. '0 2 * * *' for 02:00 daily")
    dag_id = entry.get("dag_id", "perilflow_generate_and_run")
    if dag_id not in DAG_IDS:
        raise ScheduleError(f"{where}.dag_id {dag_id!r}: use one of {list(DAG_IDS)}")
    conf = entry.get("conf")
    if not isinstance(conf, dict):
        raise ScheduleError(f"{where}.conf: expected the run conf object")
    return {"name": name, "cron": cron, "dag_id": dag_id, "conf": conf}


def fire_times(cron: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times of ``cron`` in ``[start, end)``."""
    from croniter import croniter

    times = [start] if croniter.match(cron, start) else []
    it = croniter(cron, start)
    while True:
        nxt = it.get_next(datetime)
        if nxt >= end:
            return times
        times.append(nxt)


def due_runs(schedules: list[Any], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The TriggerDagRunOperator kwargs of every run due in ``[start, end)``, in schedule order."""
    runs = []
    for index, entry in enumerate(schedules):
        entry = check_schedule(entry, index)
        for when in fire_times(entry["cron"], start, end):
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
            runs.append({"trigger_dag_id": entry["dag_id"], "trigger_run_id": f"scheduled__{entry['name']}__{stamp}",
                         "conf": entry["conf"]})
    return runs


def batch_dag():
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import DAG, Variable, task
    from airflow.timetables.interval import CronDataIntervalTimetable

    cron = os.environ.get("PERILFLOW_BATCH_CRON", "*/15 * * * *")
    with DAG(dag_id=BATCH, description="Re-run analyses that have a cron schedule", tags=[TAG], catchup=False,
             schedule=CronDataIntervalTimetable(cron, timezone="UTC"), is_paused_upon_creation=False,
             max_active_runs=1, doc_md=__doc__) as dag:

        @task(task_id="due-analyses")
        def due(**context: Any) -> list[dict[str, Any]]:
            schedules = json.loads(Variable.get(VARIABLE, default="[]"))
            runs = due_runs(schedules, context["data_interval_start"], context["data_interval_end"])
            for run in runs:
                print(f"due: {run['trigger_run_id']} -> {run['trigger_dag_id']}")  # noqa: T201 - task log
            return runs

        TriggerDagRunOperator.partial(task_id="trigger-analysis", skip_when_already_exists=True,
                                      map_index_template="{{ task.trigger_run_id }}").expand_kwargs(due())
    return dag
