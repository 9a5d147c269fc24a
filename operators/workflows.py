"""The analysis DAGs, built here so the files in ``dags/`` stay one line each.

Task ids are OasisPlatform's v2 sub-task slugs, so users and tools see the same names::

    prepare-input-generation-params -> pre-analysis-hook -> prepare-keys-file[n] -> collect-keys
        -> write-input-files -> record-input-files -> cleanup-input-generation (teardown)
    prepare-losses-generation-params -> prepare-losses-generation-directory -> generate-losses-chunk[n]
        -> generate-losses-output -> record-losses-files -> cleanup-losses-generation (teardown)
                                     \\-> generate-losses (run_mode v1, instead of the three above) -/

Every sub-task has the platform's retries and the failure callback that stops the rest of
the run; each run's priority and model pool are applied by the cluster policy
(:mod:`perilflow.operators.policy`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task

from perilflow.operators import tasks
from perilflow.operators.config import retries_from_env, retry_delay_from_env
from perilflow.operators.model_step import ModelStepOperator
from perilflow.operators.runconf import GENERATE_AND_RUN, INPUT_GENERATION, LOSSES_GENERATION, TAG, run_params


def default_args() -> dict[str, Any]:
    return {
        "owner": "perilflow",
        "retries": retries_from_env(),
        "retry_delay": timedelta(seconds=retry_delay_from_env()),
        "on_failure_callback": tasks.on_step_failure,
    }


def _chunk_name(what: str) -> str:
    return f"{what} {{{{ task.step_params['chunk_index'] + 1 }}}}/{{{{ task.step_params['n_chunks'] }}}}"


def _push_plan(plan: dict[str, Any], mapped: str, context: dict[str, Any]) -> list[Any]:
    """Push each part of ``plan`` as its own XCom key; return the list the chunks are mapped over.

    Airflow maps only over a task's return value, so that is the chunk list.
    """
    ti = context["ti"]
    for key, value in plan.items():
        if key != mapped:
            # None cannot be pulled back (it reads as "no XCom"); {} tells a model step to skip itself
            ti.xcom_push(key=key, value={} if value is None else value)
    return plan[mapped]


def _cleanup_task(task_id: str, plan_task: str):
    @task(task_id=task_id)
    def run_cleanup(**context: Any) -> dict[str, Any] | None:
        plan = context["ti"].xcom_pull(task_ids=plan_task, key="cleanup")
        if not plan:  # the run stopped before anything was written
            return None
        return tasks.cleanup(plan, **context)

    return run_cleanup().as_teardown()


def input_generation_tasks(stage: str):
    """Add the input-generation tasks to the current DAG; returns (first task, record task)."""

    @task(task_id="prepare-input-generation-params")
    def prepare_params(**context: Any) -> list[dict[str, Any]]:
        return _push_plan(tasks.prepare_input_generation_params(stage, **context), "lookups", context)

    @task(task_id="record-input-files")
    def record(record: dict[str, Any], **context: Any) -> dict[str, Any]:
        return tasks.record_input_files(record, **context)

    plan = prepare_params()
    hook = ModelStepOperator(task_id="pre-analysis-hook", step="pre-analysis-hook", step_params=plan["hook"])
    keys = ModelStepOperator.partial(
        task_id="prepare-keys-file", step="prepare-keys-file", map_index_template=_chunk_name("lookup chunk"),
    ).expand(step_params=plan)
    collect = ModelStepOperator(task_id="collect-keys", step="collect-keys", step_params=plan["collect"])
    write = ModelStepOperator(task_id="write-input-files", step="write-input-files", step_params=plan["write"])
    recorded = record(plan["record"])
    plan >> hook >> keys >> collect >> write >> recorded
    recorded >> _cleanup_task("cleanup-input-generation", "prepare-input-generation-params")
    return plan, recorded


def losses_generation_tasks(stage: str, inputs=None):
    """Add the losses tasks to the current DAG (after ``inputs``, the input record, if given)."""

    @task(task_id="prepare-losses-generation-params")
    def prepare_params(inputs: dict[str, Any] | None = None, **context: Any) -> list[dict[str, Any]]:
        return _push_plan(tasks.prepare_losses_generation_params(stage, inputs, **context), "chunks", context)

    @task(task_id="record-losses-files", trigger_rule="none_failed_min_one_success")
    def record(record: dict[str, Any], **context: Any) -> dict[str, Any]:
        return tasks.record_losses_files(record, **context)

    plan = prepare_params(inputs) if inputs is not None else prepare_params()
    directory = ModelStepOperator(task_id="prepare-losses-generation-directory",
                                  step="prepare-losses-generation-directory", step_params=plan["prepare"])
    chunks = ModelStepOperator.partial(
        task_id="generate-losses-chunk", step="generate-losses-chunk", map_index_template=_chunk_name("chunk"),
    ).expand(step_params=plan)
    merge = ModelStepOperator(task_id="generate-losses-output", step="generate-losses-output",
                              step_params=plan["merge"])
    whole = ModelStepOperator(task_id="generate-losses", step="generate-losses", step_params=plan["v1"])
    recorded = record(plan["record"])
    plan >> directory >> chunks >> merge >> recorded
    plan >> whole >> recorded
    recorded >> _cleanup_task("cleanup-losses-generation", "prepare-losses-generation-params")
    return plan, recorded


#: runs of one analysis DAG that may be active at once. Slots and the models' pools cap the work; this
#: cap only decides which submitted runs compete for them, and Airflow fills it first come, first
#: served, whatever the priority: at 64, the 65th analysis of a burst waited behind every queued
#: lower-priority one (tests/integration/test_load.py).
MAX_ACTIVE_RUNS = 4096


def _dag(dag_id: str, stage: str, description: str) -> DAG:
    return DAG(
        dag_id=dag_id, description=description, schedule=None, catchup=False, tags=[TAG],
        params=run_params(stage), default_args=default_args(), is_paused_upon_creation=False,
        max_active_runs=MAX_ACTIVE_RUNS, doc_md=__doc__,
    )


def input_generation_dag() -> DAG:
    with _dag(INPUT_GENERATION, "inputs", "OED exposure -> keys lookup -> Oasis input files") as dag:
        input_generation_tasks("inputs")
    return dag


def losses_generation_dag() -> DAG:
    with _dag(LOSSES_GENERATION, "losses", "Oasis input files -> GUL/IL/RI losses -> ORD outputs") as dag:
        losses_generation_tasks("losses")
    return dag


def generate_and_run_dag() -> DAG:
    with _dag(GENERATE_AND_RUN, "both", "Input generation then losses, in one run") as dag:
        _, recorded = input_generation_tasks("both")
        losses_generation_tasks("both", inputs=recorded)
    return dag
