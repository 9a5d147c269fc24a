"""Cluster policy shipped with the package: each run's priority and model pool on every task.

Airflow loads it through the ``airflow.policy`` entry point (setup.cfg), so any Airflow
that has Perilflow installed applies it -- scheduler, api-server and dag-processor alike;
nothing is copied into ``airflow_local_settings.py``. A priority-weight strategy cannot see
the run conf (airflow3-notes.md section 9); ``task_instance_mutation_hook`` gets the DAG run,
also when the scheduler creates the mapped chunks later, so every task instance of a run,
chunks included, gets the analysis's priority (1-10) as its priority weight, and the
model's pool when the conf names one.
"""

from __future__ import annotations

from typing import Any

from airflow.policies import hookimpl

PERILFLOW_DAG_PREFIX = "perilflow_"


def run_priority(conf: dict[str, Any] | None) -> int | None:
    """The priority weight for a run conf, or None to leave the task's own."""
    value = (conf or {}).get("priority")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        return None
    return value


@hookimpl
def task_instance_mutation_hook(task_instance: Any, dag_run: Any) -> None:
    if dag_run is None or not str(task_instance.dag_id).startswith(PERILFLOW_DAG_PREFIX):
        return
    conf = dag_run.conf or {}
    priority = run_priority(conf)
    if priority is not None:
        task_instance.priority_weight = priority
    pool = ((conf.get("model") or {}) if isinstance(conf.get("model"), dict) else {}).get("pool")
    task_id = str(task_instance.task_id)
    is_model_step = not (task_id.endswith("-params") or task_id.startswith(("record-", "cleanup-")))
    if pool and is_model_step:
        task_instance.pool = str(pool)


def _call_the_hook_at_trigger_time() -> None:
    """Make Airflow call the hook for the task instances it creates when a run is triggered.

    Airflow 3.3 skips the hook on that path (``DagRun.verify_integrity`` bulk-inserts rows)
    while ``airflow.settings.task_instance_mutation_hook.is_noop`` is True, and only
    ``import_local_settings`` clears that flag, when an ``airflow_local_settings`` module
    exists: a policy loaded from the entry point alone then reached only the mapped chunks
    the scheduler expands later, not the other tasks of a run. This module is imported by
    ``settings.initialize`` (``load_policy_plugins``) before ``import_local_settings``.
    """
    from airflow import settings

    settings.task_instance_mutation_hook.is_noop = False


_call_the_hook_at_trigger_time()
