"""``/v2/analysis-task-statuses/``: the sub-tasks of analyses' current DAG runs, with their logs.

No table holds sub-tasks: they are the task instances of each analysis's current run
(ARCHITECTURE.md), with ids from :func:`routes.analyses.sub_task_id` (the analysis id is in
the id). As in the reference, these routes are for admins (403 otherwise). Logs:

* ``output_log/``: the Airflow task log of the latest try;
* ``retry_log/``: the logs of the earlier tries (404 when there was one try);
* ``error_log/``: the step's error kept in storage (``errors/<slug>.log`` of the run's folder,
  written when a step fails for good), else the error lines of the latest try's log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import AdminDep, DbDep, SettingsDep, api_base
from perilflow.plugins.api.gateway import TaskInstanceInfo, WorkflowError
from perilflow.plugins.api.routes.analyses import _folder, _sub_task_json, gateway_of, sub_task_id, sub_tasks
from perilflow.plugins.db.models import Analysis
from perilflow.plugins.settings import ApiSettings

router = APIRouter(prefix="/v2/analysis-task-statuses", tags=["analysis-task-statuses"])
FILTERS = ("name", "slug", "task_id", "queue_name", "status")


@router.get("/", summary="Sub-tasks of the analyses' current runs (admin; filters: analysis, name, slug, task_id, "
                         "queue_name, status and their __contains / __in)")
def list_task_statuses(request: Request, db: DbDep, caller: AdminDep, analysis: int | None = None,
                       limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    stmt = select(Analysis).where(Analysis.run_id.is_not(None)).order_by(Analysis.id)
    if analysis is not None:
        stmt = stmt.where(Analysis.id == analysis)
    gateway, base = gateway_of(request), api_base(request)
    out: list[dict[str, Any]] = []
    for row in db.scalars(stmt):
        out.extend(sub_tasks(gateway, row, base))
    params = request.query_params
    for field in FILTERS:
        if field in params:
            out = [t for t in out if str(t[field]) == params[field]]
        if f"{field}__contains" in params:
            out = [t for t in out if params[f"{field}__contains"] in str(t[field] or "")]
        if f"{field}__in" in params:
            wanted = set(params[f"{field}__in"].split(","))
            out = [t for t in out if str(t[field]) in wanted]
    return out[offset:] if limit is None else out[offset:offset + limit]


def _find(request: Request, db: DbDep, task_pk: int) -> tuple[Analysis, TaskInstanceInfo]:
    analysis = db.get(Analysis, task_pk >> 32)
    if analysis is not None and analysis.dag_id and analysis.run_id:
        for ti in gateway_of(request).task_instances(analysis.dag_id, analysis.run_id):
            if sub_task_id(analysis.id, ti.task_id, ti.map_index) == task_pk:
                return analysis, ti
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis task status {task_pk} not found (a rerun of the "
                        "analysis replaces its sub-tasks)")


@router.get("/{task_pk}/", summary="One sub-task (admin)")
def get_task_status(request: Request, task_pk: int, db: DbDep, caller: AdminDep) -> dict[str, Any]:
    analysis, ti = _find(request, db, task_pk)
    return _sub_task_json(ti, analysis, api_base(request))


def _log(request: Request, analysis: Analysis, ti: TaskInstanceInfo, try_number: int) -> str | None:
    try:
        return gateway_of(request).task_log(analysis.dag_id, analysis.run_id, ti.task_id, ti.map_index, try_number)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


def _text(text: str | None, what: str, task_pk: int) -> PlainTextResponse:
    if not text:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} for analysis task status {task_pk}")
    return PlainTextResponse(text)


@router.get("/{task_pk}/output_log/", summary="The Airflow log of the latest try (admin)",
            response_class=PlainTextResponse)
def output_log(request: Request, task_pk: int, db: DbDep, caller: AdminDep) -> PlainTextResponse:
    analysis, ti = _find(request, db, task_pk)
    text = _log(request, analysis, ti, ti.try_number) if ti.try_number else None
    return _text(text, "output log", task_pk)


@router.get("/{task_pk}/retry_log/", summary="The Airflow logs of the earlier tries (admin)",
            response_class=PlainTextResponse)
def retry_log(request: Request, task_pk: int, db: DbDep, caller: AdminDep) -> PlainTextResponse:
    analysis, ti = _find(request, db, task_pk)
    parts = []
    for attempt in range(1, ti.try_number):
        text = _log(request, analysis, ti, attempt)
        if text:
            parts.append(f"--- try {attempt} ---\n{text}")
    return _text("".join(parts), "retry log", task_pk)


def stored_error(settings: ApiSettings, analysis: Analysis, ti: TaskInstanceInfo) -> str | None:
    """The step's error as ``on_step_failure`` kept it: ``errors/<slug>.log`` of the run's folders."""
    from perilflow.operators.storage import safe_name

    slug = ti.task_id if ti.map_index < 0 else f"{ti.task_id}-{ti.map_index}"
    for kind in ("files", "losses"):
        try:
            path = files.storage_path(settings, f"{_folder(settings, analysis, kind)}/errors/{safe_name(slug)}.log")
            if path.exists():
                return path.read_text()
        except OSError:
            continue
    return None


@router.get("/{task_pk}/error_log/", summary="The step's error (storage errors/ file, else the log's errors; admin)",
            response_class=PlainTextResponse)
def error_log(request: Request, task_pk: int, db: DbDep, caller: AdminDep, settings: SettingsDep
              ) -> PlainTextResponse:
    analysis, ti = _find(request, db, task_pk)
    text = stored_error(settings, analysis, ti)
    if not text and ti.try_number:
        log = _log(request, analysis, ti, ti.try_number) or ""
        text = "".join(line + "\n" for line in log.splitlines()
                       if any(word in line.lower() for word in (" error ", " critical ", "traceback")))
    return _text(text, "error log", task_pk)
