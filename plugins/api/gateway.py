"""The workflow gateway: how the API starts, watches and cancels the analysis DAG runs.

The app is given a :class:`WorkflowGateway`; tests give it a fake that records calls.
:class:`AirflowGateway` is the production one, used inside Airflow's api-server process:

* trigger: ``airflow.api.common.trigger_dag.trigger_dag`` (in Airflow 3.3.2 it creates the
  DagRun through ``SerializedDAG.create_dagrun``, which validates the conf against the DAG's
  Params and raises ``ParamValidationError``), so no service credentials are needed; the
  logical date is the submission time, so equal priorities start first come, first served;
* reading: the DagRun, its task instances and the record tasks' XCom through Airflow's ORM
  session (the api-server owns the metadata DB; airflow3-notes.md section 9.4);
* cancel: :func:`perilflow.operators.cancel.cancel_run` through the REST API (it skips
  unfinished task instances before failing the run, so sub-tasks end CANCELLED);
* resume: Airflow's ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` with the service
  account, on the task instances :func:`resume_targets` picks (see :func:`clear_body`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

RECORD_INPUTS = "record-input-files"
RECORD_LOSSES = "record-losses-files"
#: logical dates tried when a run is triggered (see :meth:`AirflowGateway.trigger`)
TRIGGER_TRIES = 5


def submission_time() -> datetime:
    """Now, in UTC, to the microsecond: a triggered run's logical date."""
    return datetime.now(UTC)


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

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any: ...

    def resume(self, dag_id: str, run_id: str) -> list[tuple[str, int]]: ...

    def ping(self) -> None: ...


def resume_targets(tis: list[TaskInstanceInfo]) -> list[tuple[str, int]]:
    """The task instances a resume clears: the failed and upstream_failed ones, and the mapped siblings
    of a failed chunk that ``on_step_failure`` stopped (skipped) when it failed.

    Finished chunks are left alone, so a resume redoes only what did not complete. A skipped
    sibling must be cleared too: left skipped, the merge step after the chunks would be skipped
    and the run would end without outputs.
    """
    failed_mapped = {ti.task_id for ti in tis if ti.state == "failed" and ti.map_index >= 0}
    return sorted((ti.task_id, ti.map_index) for ti in tis
                  if ti.state in ("failed", "upstream_failed")
                  or (ti.state == "skipped" and ti.map_index >= 0 and ti.task_id in failed_mapped))


def clear_body(run_id: str, targets: list[tuple[str, int]]) -> dict[str, Any]:
    """The body of ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` (Airflow 3.3 ClearTaskInstancesBody).

    ``only_failed`` is false because the stopped siblings are ``skipped``, which only_failed would
    not clear; the list names exactly what to clear instead (``[task_id, map_index]`` for mapped
    tasks), ``include_downstream`` adds the merge/record/cleanup steps after them, and
    ``reset_dag_runs`` puts the run back to queued so the scheduler picks it up.
    """
    return {"dry_run": False, "dag_run_id": run_id, "only_failed": False, "only_running": False,
            "reset_dag_runs": True, "include_downstream": True, "include_upstream": False,
            "task_ids": [task_id if map_index < 0 else [task_id, map_index] for task_id, map_index in targets]}


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
        """Create the DAG run, with the submission time (to the microsecond) as its logical date.

        The scheduler queues waiting task instances by priority weight, then by their run's
        logical date: a run without one (Airflow's default for a manual trigger) has no place
        among equal priorities, so analyses of one priority would start in no particular order.
        The logical date is unique per DAG; two submissions in the same microsecond take the
        next free one (a few tries, then the error).
        """
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists, ParamValidationError
        from airflow.utils.types import DagRunTriggeredByType
        from sqlalchemy.exc import IntegrityError

        submitted = submission_time()
        for attempt in range(TRIGGER_TRIES):
            try:
                trigger_dag(dag_id, run_id=run_id, conf=conf, triggered_by=DagRunTriggeredByType.REST_API,
                            triggering_user_name=user, logical_date=submitted + timedelta(microseconds=attempt),
                            replace_microseconds=False)
                return
            except DagNotFound:
                raise WorkflowError(f"DAG {dag_id} is not known to Airflow yet; check the dag-processor has parsed "
                                    "the perilflow DAGs") from None
            except (DagRunAlreadyExists, ParamValidationError, ValueError) as exc:
                raise WorkflowError(f"Airflow refused the run of {dag_id}: {exc}") from None
            except IntegrityError as exc:  # another run of the DAG holds this logical date
                if attempt == TRIGGER_TRIES - 1:
                    raise WorkflowError(f"Airflow refused the run of {dag_id}: {exc.orig}") from None

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

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        """One XCom value of an unmapped task (None when there is none)."""
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        with _read_session() as session:
            row = session.scalar(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id,
                                                         XComModel.task_id == task_id, XComModel.key == key,
                                                         XComModel.map_index == -1))
            return None if row is None else XComModel.deserialize_value(row)

    def ping(self) -> None:
        """Raise WorkflowError when Airflow's metadata DB does not answer."""
        from sqlalchemy import text

        try:
            with _read_session() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any driver error means "down"
            raise WorkflowError(f"Airflow's metadata DB does not answer: {type(exc).__name__}") from None

    def resume(self, dag_id: str, run_id: str, api: Any = None) -> list[tuple[str, int]]:
        """Clear the failed part of a failed run through Airflow's REST API; returns what was cleared.

        ``api`` is an :class:`~perilflow.operators.airflow_api.AirflowApi` (default: the service account's).
        """
        from urllib.parse import quote

        from perilflow.operators.airflow_api import AirflowApi, AirflowApiError
        from perilflow.operators.config import PlatformConfig

        targets = resume_targets(self.task_instances(dag_id, run_id))
        if not targets:
            raise WorkflowError(f"{dag_id}/{run_id} has no failed task instance to clear")
        own = api is None
        if own:
            api = AirflowApi(self.api_url or PlatformConfig.from_env().api_url)
        try:
            api.call("POST", f"/dags/{quote(dag_id, safe='')}/clearTaskInstances", json=clear_body(run_id, targets))
        except AirflowApiError as exc:
            raise WorkflowError(f"Airflow refused to clear the failed tasks of {dag_id}/{run_id}: {exc}") from None
        finally:
            if own:
                api.close()
        return targets

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
        self.xcom_values: dict[tuple[str, str, str, str], Any] = {}
        self.resumed: list[tuple[str, str, list[tuple[str, int]]]] = []
        self.down: str | None = None

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

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        return self.xcom_values.get((dag_id, run_id, task_id, key))

    def ping(self) -> None:
        if self.down:
            raise WorkflowError(self.down)

    def resume(self, dag_id: str, run_id: str) -> list[tuple[str, int]]:
        """As Airflow's clear: the targets go back to no state and the run to queued."""
        if self.fail_next:
            message, self.fail_next = self.fail_next, None
            raise WorkflowError(message)
        tis = self.tis.get((dag_id, run_id), [])
        targets = resume_targets(tis)
        if not targets:
            raise WorkflowError(f"{dag_id}/{run_id} has no failed task instance to clear")
        self.resumed.append((dag_id, run_id, targets))
        self.tis[(dag_id, run_id)] = [
            TaskInstanceInfo(**{**ti.__dict__, "state": None}) if (ti.task_id, ti.map_index) in targets else ti
            for ti in tis]
        self.runs[(dag_id, run_id)] = RunInfo("queued")
        return targets

    def cancel(self, dag_id: str, run_id: str) -> None:
        if self.fail_next:
            message, self.fail_next = self.fail_next, None
            raise WorkflowError(message)
        self.cancelled.append((dag_id, run_id))
        self.tis[(dag_id, run_id)] = [
            TaskInstanceInfo(**{**ti.__dict__, "state": "skipped"}) if ti.state not in ("success", "failed") else ti
            for ti in self.tis.get((dag_id, run_id), [])]
        self.runs[(dag_id, run_id)] = RunInfo("failed")
