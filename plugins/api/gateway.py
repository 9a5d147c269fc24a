"""The workflow gateway: how the API starts, watches and cancels the analysis DAG runs.

The app is given a :class:`WorkflowGateway`; tests give it a fake that records calls.
:class:`AirflowGateway` is the production one, used inside Airflow's api-server process:

* trigger: ``airflow.api.common.trigger_dag.trigger_dag`` (in Airflow 3.3.2 it creates the
  DagRun through ``SerializedDAG.create_dagrun``, which validates the conf against the DAG's
  Params and raises ``ParamValidationError``), so no service credentials are needed;
* reading: the DagRun, its task instances and the record tasks' XCom through Airflow's ORM
  session (the api-server owns the metadata DB; airflow3-notes.md section 9.4);
* cancel: :func:`perilflow.operators.cancel.cancel_run` through the REST API (it skips
  unfinished task instances before failing the run, so sub-tasks end CANCELLED).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

RECORD_INPUTS = "record-input-files"
RECORD_LOSSES = "record-losses-files"


class WorkflowError(RuntimeError):
    """The workflow engine refused the request (the message says why)."""


@dataclass(frozen=True)
class TaskInstanceInfo:
    task_id: str
    map_index: int
    state: str | None
    try_number: int = 0
    queued_dttm: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    rendered_map_index: str | None = None
    queue: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """A DAG run's state (``queued``, ``running``, ``success``, ``failed``) and times."""

    state: str
    start_date: datetime | None = None
    end_date: datetime | None = None


class WorkflowGateway(Protocol):
    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], user: str) -> None: ...

    def run_info(self, dag_id: str, run_id: str) -> RunInfo | None: ...

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceInfo]: ...

    def xcom_return(self, dag_id: str, run_id: str, task_id: str) -> Any: ...

    def cancel(self, dag_id: str, run_id: str) -> None: ...

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str | None: ...


def format_log(content: Any) -> str:
    """Airflow's structured log (``content: [{timestamp, level, event, ...}]``) as plain lines."""
    lines = []
    for item in content or []:
        if isinstance(item, dict):
            head = " ".join(str(item[k]) for k in ("timestamp", "level") if item.get(k))
            lines.append(f"{head} {item.get('event', '')}".strip())
        else:
            lines.append(str(item))
    return "\n".join(lines) + ("\n" if lines else "")


@contextmanager
def _read_session() -> Iterator[Any]:
    """A private, read-only session on Airflow's metadata DB, rolled back and closed at the end.

    Not Airflow's scoped ``create_session()``: in the scheduler (where the listener runs) that
    is the scheduling loop's own session, which must not be committed mid-loop ("UNEXPECTED
    COMMIT - THIS WILL BREAK HA LOCKS") nor have its objects detached.
    """
    from airflow import settings as airflow_settings
    from sqlalchemy.orm import Session

    if airflow_settings.engine is None:
        airflow_settings.configure_orm()
    session = Session(bind=airflow_settings.engine, autoflush=False, expire_on_commit=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


class AirflowGateway:
    """Production gateway; only usable inside a process configured for Airflow's metadata DB."""

    def __init__(self, api_url: str | None = None) -> None:
        self.api_url = api_url

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], user: str) -> None:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists, ParamValidationError
        from airflow.utils.types import DagRunTriggeredByType

        try:
            trigger_dag(dag_id, run_id=run_id, conf=conf, triggered_by=DagRunTriggeredByType.REST_API,
                        triggering_user_name=user)
        except DagNotFound:
            raise WorkflowError(f"DAG {dag_id} is not known to Airflow yet; check the dag-processor has parsed "
                                "the perilflow DAGs") from None
        except (DagRunAlreadyExists, ParamValidationError, ValueError) as exc:
            raise WorkflowError(f"Airflow refused the run of {dag_id}: {exc}") from None

    def run_info(self, dag_id: str, run_id: str) -> RunInfo | None:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        with _read_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
            if run is None:
                return None
            return RunInfo(state=str(run.state), start_date=run.start_date, end_date=run.end_date)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceInfo]:
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select

        with _read_session() as session:
            rows = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                              TaskInstance.run_id == run_id)).all()
            return [TaskInstanceInfo(task_id=ti.task_id, map_index=ti.map_index,
                                     state=None if ti.state is None else str(ti.state), try_number=ti.try_number,
                                     queued_dttm=ti.queued_dttm, start_date=ti.start_date, end_date=ti.end_date,
                                     rendered_map_index=ti.rendered_map_index, queue=ti.queue)
                    for ti in rows]

    def xcom_return(self, dag_id: str, run_id: str, task_id: str) -> Any:
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        with _read_session() as session:
            row = session.scalar(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id,
                                                         XComModel.task_id == task_id,
                                                         XComModel.key == "return_value"))
            return None if row is None else XComModel.deserialize_value(row)

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str | None:
        """One try's log through Airflow's REST API (service account; the api-server reads local or remote logs)."""
        from urllib.parse import quote

        from perilflow.operators.airflow_api import AirflowApi, AirflowApiError
        from perilflow.operators.config import PlatformConfig

        cfg = PlatformConfig.from_env()
        path = (f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{quote(task_id, safe='')}/logs/{int(try_number)}")
        try:
            with AirflowApi(self.api_url or cfg.api_url) as api:
                reply = api.call("GET", path, params={"map_index": map_index, "full_content": True})
        except AirflowApiError as exc:
            if " 404 " in str(exc):
                return None
            raise WorkflowError(f"could not read the log of {task_id}[{map_index}] try {try_number}: {exc}") from None
        return format_log((reply or {}).get("content"))

    def cancel(self, dag_id: str, run_id: str) -> None:
        from perilflow.operators.airflow_api import AirflowApi, AirflowApiError
        from perilflow.operators.cancel import cancel_run
        from perilflow.operators.config import PlatformConfig

        cfg = PlatformConfig.from_env()
        try:
            with AirflowApi(self.api_url or cfg.api_url) as api:
                cancel_run(api, dag_id, run_id, cfg)
        except AirflowApiError as exc:
            raise WorkflowError(f"could not cancel {dag_id}/{run_id}: {exc}") from None


class FakeGateway:
    """An in-memory gateway for tests and demos: records triggers and cancels; states are set by hand."""

    def __init__(self) -> None:
        self.triggered: list[tuple[str, str, dict[str, Any], str]] = []
        self.cancelled: list[tuple[str, str]] = []
        self.runs: dict[tuple[str, str], RunInfo] = {}
        self.tis: dict[tuple[str, str], list[TaskInstanceInfo]] = {}
        self.xcoms: dict[tuple[str, str, str], Any] = {}
        self.fail_next: str | None = None
        self.logs: dict[tuple[str, str, str, int, int], str] = {}

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any], user: str) -> None:
        if self.fail_next:
            message, self.fail_next = self.fail_next, None
            raise WorkflowError(message)
        self.triggered.append((dag_id, run_id, conf, user))
        self.runs[(dag_id, run_id)] = RunInfo("queued")

    def run_info(self, dag_id: str, run_id: str) -> RunInfo | None:
        return self.runs.get((dag_id, run_id))

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceInfo]:
        return list(self.tis.get((dag_id, run_id), []))

    def xcom_return(self, dag_id: str, run_id: str, task_id: str) -> Any:
        return self.xcoms.get((dag_id, run_id, task_id))

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str | None:
        return self.logs.get((dag_id, run_id, task_id, map_index, try_number))

    def cancel(self, dag_id: str, run_id: str) -> None:
        self.cancelled.append((dag_id, run_id))
        self.tis[(dag_id, run_id)] = [
            TaskInstanceInfo(**{**ti.__dict__, "state": "skipped"}) if ti.state not in ("success", "failed") else ti
            for ti in self.tis.get((dag_id, run_id), [])]
        self.runs[(dag_id, run_id)] = RunInfo("failed")
