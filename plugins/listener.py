"""Airflow listener: records a Perilflow run's outcome in the product DB when the DAG run changes state.

Airflow calls the hooks in the process that changed the run's state: the scheduler when a run
starts, succeeds or fails by itself, the api-server when a run is set to failed over REST
(a cancel). Either way the analysis's status and files (input/output tarballs, traceback)
are recorded at once, so they are right even if no client ever polls the analysis.

It also warms the scheduler (:func:`on_starting`): the LocalExecutor forks its workers from the
scheduler, and each task process from a worker, so modules the scheduler imported before it
started its executor are already in every task process when it parses its DAG file.

The DAG run's new state may not be committed when the hook runs, so the state is taken from
the ``dag_run`` object handed in; the task instances and XComs it reads were committed by
the tasks earlier. Any error is logged and swallowed: a listener must never disturb the
scheduler.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _product() -> tuple[Any, Any, Any]:
    """(settings, sessionmaker, gateway) of this process, made once."""
    with _lock:
        if not _state:
            from perilflow.plugins.api.gateway import AirflowGateway
            from perilflow.plugins.db import make_engine, make_sessionmaker
            from perilflow.plugins.settings import ApiSettings

            settings = ApiSettings.from_env()
            _state.update(settings=settings, sessionmaker=make_sessionmaker(make_engine(settings.database_url)),
                          gateway=AirflowGateway())
        return _state["settings"], _state["sessionmaker"], _state["gateway"]


def reset() -> None:
    """Forget this process's settings and engine (tests)."""
    with _lock:
        if _state:
            _state["sessionmaker"].kw["bind"].dispose()
        _state.clear()


class _KnownState:
    """A gateway that reports the run's state as the listener saw it, and delegates the rest."""

    def __init__(self, gateway: Any, dag_id: str, run_id: str, info: Any) -> None:
        self.gateway, self.key, self.info = gateway, (dag_id, run_id), info

    def run_info(self, dag_id: str, run_id: str) -> Any:
        return self.info if (dag_id, run_id) == self.key else self.gateway.run_info(dag_id, run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


def record(dag_id: str, run_id: str, state: str, end_date: Any = None, *, settings: Any = None,
           sessionmaker: Any = None, gateway: Any = None) -> str | None:
    """Move the analysis (or algorithm task) whose current run is ``dag_id``/``run_id`` on to ``state``; returns
    its new status.

    None when the run is not a Perilflow analysis's current run (another DAG, a rerun since,
    a run triggered outside the API).
    """
    from sqlalchemy import select

    from perilflow.operators.runconf import GENERATE_AND_RUN, INPUT_GENERATION, LOSSES_GENERATION
    from perilflow.plugins.api.gateway import RunInfo
    from perilflow.plugins.api.routes import algorithms
    from perilflow.plugins.api.routes.analyses import sync
    from perilflow.plugins.db.models import Analysis

    if dag_id not in (INPUT_GENERATION, LOSSES_GENERATION, GENERATE_AND_RUN, algorithms.ALGORITHM_TASK):
        return None
    if settings is None or sessionmaker is None or gateway is None:
        settings, sessionmaker, gateway = _product()
    known = _KnownState(gateway, dag_id, run_id, RunInfo(state=state, end_date=end_date))
    if dag_id == algorithms.ALGORITHM_TASK:  # an algorithm task's run (issue 9)
        with sessionmaker.begin() as db:
            return algorithms.record(db, settings, known, run_id)
    with sessionmaker.begin() as db:
        analysis = db.scalar(select(Analysis).where(Analysis.run_id == run_id, Analysis.dag_id == dag_id)
                             .with_for_update())
        if analysis is None:
            return None
        before = analysis.status
        sync(db, settings, known, analysis)
        if analysis.status != before:
            log.info("analysis %s: %s -> %s (DAG run %s/%s %s)", analysis.id, before, analysis.status, dag_id,
                     run_id, state)
        return analysis.status


def _record(dag_run: Any, state: str) -> None:
    try:
        record(dag_run.dag_id, dag_run.run_id, state, getattr(dag_run, "end_date", None))
    except Exception:  # noqa: BLE001 - never disturb the scheduler or the api-server
        log.exception("could not record the %s of %s/%s in the Perilflow product DB", state,
                      getattr(dag_run, "dag_id", "?"), getattr(dag_run, "run_id", "?"))


#: what a task process imports to parse a Perilflow DAG file, 1.35-1.65 s of CPU in each (KubernetesPodOperator,
#: the Kubernetes client and our operators; ADR 0007), unless it inherits them from the scheduler it was forked from
DAG_MODULES = ("perilflow.operators.workflows", "perilflow.operators.algorithms", "perilflow.operators.batch")


def _forks_tasks() -> bool:
    """Whether this process's executor forks the task processes (LocalExecutor), so imports here reach them."""
    from airflow.configuration import conf

    return "LocalExecutor" in conf.get("core", "executor", fallback="")


@hookimpl
def on_starting(component: Any) -> None:
    """Import the DAGs' modules in an Airflow job (scheduler, dag-processor, triggerer) that starts with the
    LocalExecutor configured, before the scheduler forks its executor's workers: every task process
    then finds them imported instead of importing them itself (ADR 0007).

    Task processes call this hook too (with a marker that is no job); they import nothing here.
    """
    if type(component).__name__ != "Job":  # airflow.jobs.job.Job; not imported here: task processes load no ORM
        return
    try:
        if _forks_tasks():
            for name in DAG_MODULES:
                importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a task process imports them again; the scheduler must start anyway
        log.exception("could not import the Perilflow DAG modules in the scheduler")


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    _record(dag_run, "running")


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _record(dag_run, "success")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _record(dag_run, "failed")
