"""``/v2/analyses/``: CRUD, settings, actions (generate_inputs, run, generate_and_run, cancel...), status,
sub-tasks from the current DAG run, and the run's files.

An analysis's status is stored in the product DB. While it is QUEUED or STARTED, each read
asks the workflow gateway for the current DAG run's state and moves the status on
(:func:`sync`); when the run has ended, the outcome (file URIs, traceback) is recorded, so it
survives ``airflow db clean``. Cancelled states stick.
"""

from __future__ import annotations

import json
import uuid
import zlib
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, UploadFile, status
from sqlalchemy import Text, and_, cast, func, select
from sqlalchemy.orm import Session

from perilflow.operators.runconf import GENERATE_AND_RUN, INPUT_GENERATION, LOSSES_GENERATION
from perilflow.plugins.api import files
from perilflow.plugins.api.auth import (
    Caller,
    CallerDep,
    DbDep,
    SettingsDep,
    api_base,
    get_changeable,
    get_visible,
    group_names,
    may_change,
    visible,
)
from perilflow.plugins.api.gateway import (
    RECORD_INPUTS,
    RECORD_LOSSES,
    TaskInstanceInfo,
    WorkflowError,
    WorkflowGateway,
)
from perilflow.plugins.api.schemas import AnalysisIn, AnalysisPatch, ChunkingIn
from perilflow.plugins.api.status import (
    ACTIVE,
    INPUTS_ACTIVE,
    SUB_TASK_STATUSES,
    AnalysisStatus,
    check_transition,
    sub_task_status,
)
from perilflow.plugins.db.models import (
    Analysis,
    DataFile,
    Group,
    Model,
    Portfolio,
    analysis_data_files,
    portfolio_groups,
)
from perilflow.plugins.settings import ApiSettings

router = APIRouter(prefix="/v2/analyses", tags=["analyses"])
WHAT = "analysis"
S = AnalysisStatus
DAG_FOR_ACTION = {"generate_inputs": INPUT_GENERATION, "run": LOSSES_GENERATION,
                  "generate_and_run": GENERATE_AND_RUN}
FILE_FIELDS = ("input_file", "lookup_errors_file", "lookup_success_file", "lookup_validation_file",
               "summary_levels_file", "input_generation_traceback_file", "output_file", "run_traceback_file")
#: files input generation writes beside keys.csv (a worker image from before they existed does not write them)
SUMMARY_FILES = {"lookup_validation_file": "exposure_summary_report.json",
                 "summary_levels_file": "exposure_summary_levels.json"}


def gateway_of(request: Request) -> WorkflowGateway:
    return request.app.state.perilflow_gateway


def _now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------- status from the DAG run


def _folder(settings: ApiSettings, analysis: Analysis, kind: str) -> str:
    from perilflow.operators.storage import safe_name

    return f"{settings.storage_url}/analysis-{analysis.id}_{kind}-{safe_name(analysis.run_uuid or '')}"


def _record_inputs(settings: ApiSettings, gateway: WorkflowGateway, analysis: Analysis) -> None:
    record = gateway.xcom_return(analysis.dag_id, analysis.run_id, RECORD_INPUTS) or {}
    folder = _folder(settings, analysis, "files")
    analysis.input_file = record.get("input_file") or f"{folder}/input.tar.gz"
    analysis.lookup_success_file = record.get("lookup_success_file") or f"{folder}/keys.csv"
    analysis.lookup_errors_file = record.get("lookup_errors_file") or f"{folder}/keys-errors.csv"
    for column, name in SUMMARY_FILES.items():
        uri = record.get(column) or f"{folder}/{name}"
        setattr(analysis, column, uri if _stored(settings, uri) else None)


def _stored(settings: ApiSettings, uri: str) -> bool:
    """True when ``uri`` is a file in storage (False when storage cannot say)."""
    try:
        return files.storage_path(settings, uri).exists()
    except (OSError, ValueError):
        return False


def _record_losses(settings: ApiSettings, gateway: WorkflowGateway, analysis: Analysis) -> None:
    record = gateway.xcom_return(analysis.dag_id, analysis.run_id, RECORD_LOSSES) or {}
    analysis.output_file = record.get("output_file") or f"{_folder(settings, analysis, 'losses')}/output.tar.gz"


NO_KEYS_MARKERS = ("exited with code 3", ": no keys:")


def no_keys(settings: ApiSettings, folder: str) -> bool:
    """True when input generation failed because the lookup matched no location (worker exit code 3).

    The failed step's error is in ``{folder}/errors/*.log`` (operators.tasks.on_step_failure)
    and in the run's ``traceback.txt``.
    """
    try:
        errors = files.storage_path(settings, f"{folder}/errors")
        texts = [p.read_text() for p in errors.iterdir() if p.name.endswith(".log")] if errors.exists() else []
        traceback = files.storage_path(settings, f"{folder}/traceback.txt")
        if traceback.exists():
            texts.append(traceback.read_text())
    except OSError:
        return False
    return any(marker in text for text in texts for marker in NO_KEYS_MARKERS)


PLAN_INPUTS, PLAN_LOSSES = "prepare-input-generation-params", "prepare-losses-generation-params"


def _record_sizes(gateway: WorkflowGateway, analysis: Analysis) -> None:
    """Chunk counts (and the event count, when the plan has it) from the plan tasks' XCom keys."""
    dag_id, run_id = analysis.dag_id, analysis.run_id
    if analysis.lookup_chunks is None and dag_id in (INPUT_GENERATION, GENERATE_AND_RUN):
        analysis.lookup_chunks = _int(gateway.xcom(dag_id, run_id, PLAN_INPUTS, "n_lookup_chunks"))
    if analysis.analysis_chunks is None and dag_id in (LOSSES_GENERATION, GENERATE_AND_RUN):
        analysis.analysis_chunks = _int(gateway.xcom(dag_id, run_id, PLAN_LOSSES, "n_loss_chunks"))
        if analysis.analysis_chunks is not None and analysis.num_events_total is None:
            analysis.num_events_total = _int(gateway.xcom(dag_id, run_id, PLAN_LOSSES, "n_events"))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sync(db: Session, settings: ApiSettings, gateway: WorkflowGateway, analysis: Analysis) -> None:
    """Move an active analysis's status on from its DAG run; record the outcome when the run has ended.

    A failed run none of whose task instances failed was cancelled (``cancel_run`` skips the
    unfinished ones, then fails the run): *_CANCELLED, however it was cancelled.
    """
    if analysis.status not in ACTIVE or not analysis.run_id or not analysis.dag_id:
        return
    info = gateway.run_info(analysis.dag_id, analysis.run_id)
    if info is None:
        return
    state, dag_id = info.state, analysis.dag_id
    if state in ("running", "success", "failed"):
        _record_sizes(gateway, analysis)
    tis: list[TaskInstanceInfo] = []
    if state == "failed" or (dag_id == GENERATE_AND_RUN and state in ("running", "success")):
        tis = gateway.task_instances(dag_id, analysis.run_id)
    inputs_done = dag_id == GENERATE_AND_RUN and any(ti.task_id == RECORD_INPUTS and ti.state == "success"
                                                      for ti in tis)
    new: AnalysisStatus | None = None
    if state == "running":
        if dag_id == LOSSES_GENERATION or inputs_done:
            new = S.RUN_STARTED
        else:
            new = S.INPUTS_GENERATION_STARTED
    elif state == "success":
        if dag_id in (INPUT_GENERATION, GENERATE_AND_RUN):
            _record_inputs(settings, gateway, analysis)
        if dag_id in (LOSSES_GENERATION, GENERATE_AND_RUN):
            _record_losses(settings, gateway, analysis)
        new = S.READY if dag_id == INPUT_GENERATION else S.RUN_COMPLETED
    elif state == "failed":
        losses_stage = dag_id == LOSSES_GENERATION or inputs_done
        if inputs_done:
            _record_inputs(settings, gateway, analysis)
        if tis and not any(ti.state == "failed" for ti in tis):
            new = S.RUN_CANCELLED if losses_stage else S.INPUTS_GENERATION_CANCELLED
        elif losses_stage:
            analysis.run_traceback_file = f"{_folder(settings, analysis, 'losses')}/traceback.txt"
            new = S.RUN_ERROR
        else:
            folder = _folder(settings, analysis, "files")
            analysis.input_generation_traceback_file = f"{folder}/traceback.txt"
            new = S.INPUTS_GENERATION_NO_KEYS if no_keys(settings, folder) else S.INPUTS_GENERATION_ERROR
    if new is not None and new != analysis.status:
        analysis.status = new
        if state in ("success", "failed"):
            analysis.task_finished = info.end_date or _now()
        db.flush()


# ----------------------------------------------------------------------------- JSON


def sub_task_id(analysis_id: int, task_id: str, map_index: int) -> int:
    """A sub-task's id, the same in every list and stable while the run goes on (no table holds sub-tasks).

    ``analysis id << 32 | crc32(task id) & 0xffff << 16 | map index + 1``, so the
    analysis-task-statuses routes find the analysis from the id alone.
    """
    return (analysis_id << 32) | ((zlib.crc32(task_id.encode()) & 0xFFFF) << 16) | ((map_index + 1) & 0xFFFF)


def _sub_task_json(ti: TaskInstanceInfo, analysis: Analysis, base: str | None = None) -> dict[str, Any]:
    slug = ti.task_id if ti.map_index < 0 else f"{ti.task_id}-{ti.map_index}"
    task_pk = sub_task_id(analysis.id, ti.task_id, ti.map_index)
    logs = f"{base}/v2/analysis-task-statuses/{task_pk}" if base else None
    return {
        "id": task_pk, "task_id": f"{analysis.dag_id}/{analysis.run_id}/{ti.task_id}/{ti.map_index}",
        "status": sub_task_status(ti.state), "queue_name": ti.queue, "name": ti.rendered_map_index or ti.task_id,
        "slug": slug, "pending_time": None, "queue_time": ti.queued_dttm, "start_time": ti.start_date,
        "end_time": ti.end_date,
        "output_log": f"{logs}/output_log/" if logs and ti.try_number else None,
        "error_log": f"{logs}/error_log/" if logs and ti.state == "failed" else None,
        "retry_log": f"{logs}/retry_log/" if logs and ti.try_number > 1 else None,
        "retry_count": max(ti.try_number - 1, 0), "airflow_state": ti.state, "map_index": ti.map_index,
        "analysis": analysis.id, "try_number": ti.try_number,
    }


def sub_tasks(gateway: WorkflowGateway, analysis: Analysis, base: str | None = None) -> list[dict[str, Any]]:
    """The current DAG run's task instances as OasisPlatform sub-tasks (a rerun shows only its own)."""
    if not analysis.dag_id or not analysis.run_id:
        return []
    tis = sorted(gateway.task_instances(analysis.dag_id, analysis.run_id),
                 key=lambda ti: (ti.start_date is None, ti.start_date or _now(), ti.task_id, ti.map_index))
    return [_sub_task_json(ti, analysis, base) for ti in tis]


def analysis_json(request: Request, analysis: Analysis, db: Session | None = None,
                  tasks: list[dict[str, Any]] | None = None, has_settings: bool | None = None,
                  api: str | None = None, groups: list[str] | None = None,
                  data_files: list[int] | None = None) -> dict[str, Any]:
    base = f"{api or api_base(request)}/v2/analyses/{analysis.id}"
    if has_settings is None:
        has_settings = analysis.settings is not None
    counts: dict[str, int] | None = None
    error_ids: list[int] = []
    if tasks is not None:
        counts = dict.fromkeys(SUB_TASK_STATUSES, 0)
        for task in tasks:
            counts[task["status"]] += 1
        counts = {"TOTAL_IN_QUEUE": counts["PENDING"] + counts["QUEUED"], "TOTAL": len(tasks), **counts}
        error_ids = [t["id"] for t in tasks if t["status"] == "ERROR"]
    return {
        "created": analysis.created, "modified": analysis.modified, "name": analysis.name, "id": analysis.id,
        "portfolio": analysis.portfolio_id, "model": analysis.model_id, "status": analysis.status,
        "run_mode": analysis.run_mode, "task_started": analysis.task_started,
        "task_finished": analysis.task_finished,
        "complex_model_data_files": data_files if data_files is not None else [
            d.id for d in getattr(analysis, "complex_model_data_files", None) or []],
        **{name: (f"{base}/{name}/" if getattr(analysis, name) else None) for name in FILE_FIELDS},
        "settings_file": f"{base}/settings_file/" if has_settings else None,
        "settings": f"{base}/settings/" if has_settings else None,
        "run_log_file": f"{base}/run_log_file/" if _had_losses_run(analysis) else None,
        "storage_links": f"{base}/storage_links/", "chunking_configuration": f"{base}/chunking_configuration/",
        "lookup_chunks": analysis.lookup_chunks, "analysis_chunks": analysis.analysis_chunks,
        "sub_task_count": None if tasks is None else len(tasks),
        "groups": group_names(analysis) if groups is None else groups, "sub_task_list": f"{base}/sub_task_list/",
        "sub_task_error_ids": error_ids, "status_count": counts, "priority": analysis.priority,
        "num_events_complete": _events_complete(analysis, tasks),
        "num_events_total": analysis.num_events_total,
        "dag_id": analysis.dag_id, "dag_run_id": analysis.run_id,
    }


def _events_complete(analysis: Any, tasks: list[dict[str, Any]] | None) -> int | None:
    """Events of the finished loss chunks: all once RUN_COMPLETED; while the run goes on, the finished
    chunks' share of ``num_events_total`` (chunks are contiguous slices, sizes as ``numpy.array_split``)."""
    total = analysis.num_events_total
    if total is None:
        return None
    if analysis.status == S.RUN_COMPLETED:
        return total
    if analysis.status != S.RUN_STARTED or not tasks:
        return None
    chunks = [t for t in tasks if t["airflow_state"] != "skipped"
              and (t["slug"].rpartition("-")[0] == "generate-losses-chunk" or t["slug"] == "generate-losses")]
    n = len(chunks)
    if not n:
        return None
    size, extra = divmod(total, n)
    return sum(size + (t["map_index"] < extra) for t in chunks if t["status"] == "COMPLETED")


def _had_losses_run(analysis: Any) -> bool:
    """A losses run of the current DAG run has ended (its logs are in the losses folder)."""
    return bool(analysis.run_uuid and analysis.dag_id in (LOSSES_GENERATION, GENERATE_AND_RUN)
                and analysis.status in (S.RUN_COMPLETED, S.RUN_ERROR, S.RUN_CANCELLED))


def _detail(request: Request, db: Session, settings: ApiSettings, analysis: Analysis) -> dict[str, Any]:
    gateway = gateway_of(request)
    sync(db, settings, gateway, analysis)
    return analysis_json(request, analysis, db, sub_tasks(gateway, analysis, api_base(request)))


# ----------------------------------------------------------------------------- create / actions


def _check_priority(priority: int, caller: Caller, settings: ApiSettings) -> None:
    if priority in settings.admin_priorities and not caller.admin:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"priority": [
            f"priority {priority} is reserved for admins ({list(settings.admin_priorities)}); choose a lower one"]})


def _model_for(db: Session, model_pk: int, caller: Caller) -> Model:
    clause = visible(Model, caller)
    stmt = select(Model).where(Model.id == model_pk, Model.deleted.is_(False))
    model = db.scalar(stmt if clause is None else stmt.where(clause))
    if model is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"model": [f"model {model_pk} not found"]})
    return model


def _portfolio_for(db: Session, portfolio_pk: int, caller: Caller) -> Portfolio:
    clause = visible(Portfolio, caller)
    stmt = select(Portfolio).where(Portfolio.id == portfolio_pk)
    portfolio = db.scalar(stmt if clause is None else stmt.where(clause))
    if portfolio is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"portfolio": [f"portfolio {portfolio_pk} not found"]})
    if not may_change(portfolio, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of portfolio {portfolio_pk}'s groups")
    return portfolio


def data_files_for(db: Session, ids: list[int], caller: Caller, field: str) -> list[DataFile]:
    """The data files ``ids`` the caller may see, in id order; 400 naming ``field`` for any other id."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    stmt = select(DataFile).where(DataFile.id.in_(wanted)).order_by(DataFile.id)
    clause = visible(DataFile, caller)
    found = list(db.scalars(stmt if clause is None else stmt.where(clause)))
    missing = sorted(set(wanted) - {d.id for d in found})
    if missing:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
            f"data file(s) {missing} not found; create them with POST /v2/data_files/ first"]})
    return found


def new_analysis(db: Session, caller: Caller, settings: ApiSettings, *, name: str, portfolio: Portfolio,
                 model_pk: int, priority: int = 4, analysis_settings: dict[str, Any] | None = None,
                 data_file_ids: list[int] | None = None) -> Analysis:
    _check_priority(priority, caller, settings)
    model = _model_for(db, model_pk, caller)
    if analysis_settings is not None:
        _raise_for_settings(analysis_settings)
    analysis = Analysis(name=name, portfolio=portfolio, model=model, status=S.NEW, creator=caller.name,
                        priority=priority, settings=analysis_settings,
                        complex_model_data_files=data_files_for(db, data_file_ids or [], caller,
                                                                "complex_model_data_files"))
    db.add(analysis)
    return analysis


def _preconditions(analysis: Analysis, action: str) -> None:
    problems: dict[str, list[str]] = {}
    model = analysis.model
    if model.deleted:
        problems["model"] = [f"model {model.id} is deleted"]
    if action in ("generate_inputs", "generate_and_run") and analysis.portfolio.location_file is None:
        problems["portfolio"] = ["the portfolio has no location file; upload one (location_file/)"]
    if action in ("run", "generate_and_run") and analysis.settings is None:
        problems["settings"] = ["the analysis has no settings; POST them to settings/"]
    if action == "run" and not analysis.input_file:
        problems["input_file"] = ["the analysis has no input files; run generate_inputs first"]
    if action == "generate_and_run" and (analysis.run_mode or model.run_mode or "V2") != "V2":
        problems["run_mode"] = ["generate_and_run needs a V2 model"]
    if problems:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, problems)


def run_conf(settings: ApiSettings, analysis: Analysis, action: str, run_uuid: str) -> dict[str, Any]:
    """The conf of the DAG run for ``action`` (format: perilflow.operators.runconf)."""
    model = analysis.model
    model_obj: dict[str, Any] = {"id": f"{model.supplier_id}/{model.model_id}/{model.version_id}",
                                 **(model.runtime or {})}
    if model.chunking:
        model_obj["chunking"] = model.chunking
    conf: dict[str, Any] = {"analysis_id": analysis.id, "model": model_obj, "priority": analysis.priority,
                            "run_uuid": run_uuid, "run_mode": (analysis.run_mode or model.run_mode or "V2").lower()}
    if analysis.chunking:
        conf["chunking"] = analysis.chunking
    if action in ("generate_inputs", "generate_and_run"):
        p = analysis.portfolio
        conf["portfolio"] = {kind: stored.uri for kind, stored in (
            ("location", p.location_file), ("account", p.accounts_file), ("ri_info", p.reinsurance_info_file),
            ("ri_scope", p.reinsurance_scope_file)) if stored is not None}
        if p.reporting_currency:
            conf["currency"] = {"reporting_currency": p.reporting_currency,
                                **({"conversion": p.currency_conversion} if p.currency_conversion else {})}
    if action in ("run", "generate_and_run"):
        conf["analysis_settings"] = analysis.settings
    if action == "run":
        conf["input_file"] = analysis.input_file
    if action == "generate_inputs":
        conf.pop("run_mode")
    return conf


def start(request: Request, db: Session, caller: Caller, analysis: Analysis, action: str) -> None:
    """Check the transition and preconditions, trigger the DAG, and set the queued status."""
    message = check_transition(action, analysis.status)
    if message:
        raise HTTPException(status.HTTP_409_CONFLICT, message)
    if not may_change(analysis.model, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of model {analysis.model_id}'s groups")
    _preconditions(analysis, action)
    settings: ApiSettings = request.app.state.perilflow_settings
    run_uuid = uuid.uuid4().hex[:16]
    dag_id = DAG_FOR_ACTION[action]
    run_id = f"analysis-{analysis.id}-{action.replace('_', '-')}-{run_uuid[:8]}"
    try:
        gateway_of(request).trigger(dag_id, run_id, run_conf(settings, analysis, action, run_uuid), caller.name)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    analysis.dag_id, analysis.run_id, analysis.run_uuid = dag_id, run_id, run_uuid
    analysis.run_mode = analysis.run_mode or analysis.model.run_mode or "V2"
    analysis.task_started, analysis.task_finished = _now(), None
    if action in ("generate_inputs", "generate_and_run"):
        analysis.input_file = analysis.lookup_success_file = analysis.lookup_errors_file = None
        analysis.lookup_validation_file = analysis.summary_levels_file = None
        analysis.input_generation_traceback_file = None
        analysis.lookup_chunks = None
    if action in ("run", "generate_and_run"):
        analysis.output_file = analysis.run_traceback_file = None
        analysis.analysis_chunks = analysis.num_events_total = None
    analysis.status = S.RUN_QUEUED if action == "run" else S.INPUTS_GENERATION_QUEUED
    db.flush()


# ----------------------------------------------------------------------------- routes


@router.get("/", summary="List analyses (filters: name, name__contains, status, status__in, model, portfolio; "
                         "limit/offset pagination when limit is given)")
def list_analyses(request: Request, db: DbDep, caller: CallerDep, settings: SettingsDep, name: str | None = None,
                  name__contains: str | None = None,
                  status_filter: Annotated[str | None, Query(alias="status")] = None, status__in: str | None = None,
                  model: int | None = None, portfolio: int | None = None,
                  limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
                  offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    """A plain list, as the reference without pagination parameters; with ``limit`` (DRF's
    LimitOffsetPagination) ``{count, next, previous, results}``."""
    stmt = select(Analysis)
    clause = visible(Analysis, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    for column, value in ((Analysis.name, name), (Analysis.status, status_filter), (Analysis.model_id, model),
                          (Analysis.portfolio_id, portfolio)):
        if value is not None:
            stmt = stmt.where(column == value)
    if name__contains is not None:
        stmt = stmt.where(Analysis.name.contains(name__contains, autoescape=True))
    if status__in:
        stmt = stmt.where(Analysis.status.in_(status__in.split(",")))
    gateway, api = gateway_of(request), api_base(request)
    # A page is read with one Core query of the columns the JSON needs plus one for the portfolios'
    # groups: ORM objects with their relationships (model, portfolio and its files, the settings JSON)
    # took most of a page's time (benchmarks/api.py). Active analyses are loaded and synced as before.
    has_settings = and_(Analysis.settings.is_not(None), cast(Analysis.settings, Text) != "null").label("has")
    columns = [c for c in Analysis.__table__.c if c.key not in ("settings", "chunking")]
    page = stmt.with_only_columns(*columns, has_settings).order_by(Analysis.id)
    if limit is not None:
        page = page.limit(limit).offset(offset)
    rows = list(db.execute(page).mappings())
    portfolio_ids = {row["portfolio_id"] for row in rows}
    groups: dict[int, list[str]] = {pid: [] for pid in portfolio_ids}
    if portfolio_ids:
        for pid, group in db.execute(select(portfolio_groups.c.portfolio_id, Group.name)
                                     .join(Group, Group.id == portfolio_groups.c.group_id)
                                     .where(portfolio_groups.c.portfolio_id.in_(portfolio_ids))):
            groups[pid].append(group)
    links: dict[int, list[int]] = {row["id"]: [] for row in rows}
    if rows:
        for aid, data_file in db.execute(select(analysis_data_files.c.analysis_id, analysis_data_files.c.data_file_id)
                                         .where(analysis_data_files.c.analysis_id.in_(list(links)))
                                         .order_by(analysis_data_files.c.data_file_id)):
            links[aid].append(data_file)
    out = []
    for row in rows:
        if row["status"] in ACTIVE:
            analysis = db.get(Analysis, row["id"])
            sync(db, settings, gateway, analysis)
        else:
            analysis = SimpleNamespace(**row)
        analysis.portfolio_id, analysis.model_id = row["portfolio_id"], row["model_id"]
        out.append(analysis_json(request, analysis, db, has_settings=bool(row["has"]), api=api,
                                 groups=sorted(groups[row["portfolio_id"]]), data_files=links[row["id"]]))
    if limit is None:
        return json_reply(out)
    count = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return json_reply({"count": count,
                       "next": _page_url(request, limit, offset + limit) if offset + limit < count else None,
                       "previous": _page_url(request, limit, max(offset - limit, 0)) if offset > 0 else None,
                       "results": out})


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # as pydantic writes them (UTC as Z), so list and detail agree
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_reply(body: Any) -> Response:
    """JSON without FastAPI's jsonable_encoder (a tenth of a list's time went there); datetimes as ISO 8601."""
    return Response(json.dumps(body, default=_json_default, ensure_ascii=False, separators=(",", ":")),
                    media_type="application/json")


def _page_url(request: Request, limit: int, offset: int) -> str:
    query = dict(request.query_params)
    query.update(limit=str(limit), offset=str(offset))
    return f"{api_base(request)}/v2/analyses/?{urlencode(query)}"


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create an analysis (status NEW)")
def create_analysis(request: Request, body: AnalysisIn, db: DbDep, caller: CallerDep, settings: SettingsDep
                    ) -> dict[str, Any]:
    portfolio = _portfolio_for(db, body.portfolio, caller)
    analysis = new_analysis(db, caller, settings, name=body.name, portfolio=portfolio, model_pk=body.model,
                            priority=body.priority, analysis_settings=body.settings,
                            data_file_ids=body.complex_model_data_files)
    db.flush()
    return analysis_json(request, analysis, db, [])


@router.get("/{analysis_pk}/", summary="One analysis, with its status and sub-task counts")
def get_analysis(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                 ) -> dict[str, Any]:
    return _detail(request, db, settings, get_visible(db, Analysis, analysis_pk, caller, WHAT))


def _update(request: Request, analysis_pk: int, fields: dict[str, Any], db: Session, caller: Caller,
            settings: ApiSettings) -> dict[str, Any]:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    if fields.get("name") is not None:
        analysis.name = fields["name"]
    if fields.get("portfolio") is not None:
        analysis.portfolio = _portfolio_for(db, fields["portfolio"], caller)
    if fields.get("model") is not None:
        analysis.model = _model_for(db, fields["model"], caller)
    if fields.get("priority") is not None:
        _check_priority(fields["priority"], caller, settings)
        analysis.priority = fields["priority"]
    if fields.get("settings") is not None:
        _raise_for_settings(fields["settings"])
        analysis.settings = fields["settings"]
    if fields.get("complex_model_data_files") is not None:
        analysis.complex_model_data_files = data_files_for(db, fields["complex_model_data_files"], caller,
                                                           "complex_model_data_files")
    db.flush()
    return _detail(request, db, settings, analysis)


@router.put("/{analysis_pk}/", summary="Replace an analysis's fields")
def put_analysis(request: Request, analysis_pk: int, body: AnalysisIn, db: DbDep, caller: CallerDep,
                 settings: SettingsDep) -> dict[str, Any]:
    return _update(request, analysis_pk, body.model_dump(), db, caller, settings)


@router.patch("/{analysis_pk}/", summary="Change some of an analysis's fields")
def patch_analysis(request: Request, analysis_pk: int, body: AnalysisPatch, db: DbDep, caller: CallerDep,
                   settings: SettingsDep) -> dict[str, Any]:
    return _update(request, analysis_pk, body.model_dump(exclude_unset=True), db, caller, settings)


@router.delete("/{analysis_pk}/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete an analysis (409 while it runs: cancel it first)")
def delete_analysis(analysis_pk: int, db: DbDep, caller: CallerDep) -> Response:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    if analysis.status in ACTIVE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"analysis status is {analysis.status}; cancel it first")
    db.delete(analysis)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _action(action: str, summary: str) -> None:
    @router.post(f"/{{analysis_pk}}/{action}/", summary=summary, name=action)
    def act(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
            ) -> dict[str, Any]:
        analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
        sync(db, settings, gateway_of(request), analysis)
        start(request, db, caller, analysis, action)
        return _detail(request, db, settings, analysis)


_action("generate_inputs", "Start input generation (OED + lookup -> Oasis input files)")
_action("run", "Start the losses run on the generated inputs")
_action("generate_and_run", "Input generation then losses, in one DAG run")


def _cancel(action: str, summary: str) -> None:
    @router.post(f"/{{analysis_pk}}/{action}/", summary=summary, name=action)
    def cancel(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
               ) -> dict[str, Any]:
        analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
        gateway = gateway_of(request)
        sync(db, settings, gateway, analysis)
        message = check_transition(action, analysis.status)
        if message:
            raise HTTPException(status.HTTP_409_CONFLICT, message)
        if not may_change(analysis.model, caller):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"you are not a member of model {analysis.model_id}'s groups")
        # The cancelled status is committed before the run is cancelled. cancel_run skips the unfinished
        # tasks before it fails the run, and in between the scheduler may end the run as success: the
        # listener (scheduler or this process) must then find the analysis no longer active, instead of
        # recording RUN_COMPLETED with an output file. Committing also keeps the listener from waiting
        # for this row's lock.
        before, finished = analysis.status, analysis.task_finished
        inputs_done = analysis.dag_id == GENERATE_AND_RUN and before not in INPUTS_ACTIVE
        analysis.status = S.INPUTS_GENERATION_CANCELLED if before in INPUTS_ACTIVE else S.RUN_CANCELLED
        analysis.task_finished = _now()
        db.commit()
        try:
            gateway.cancel(analysis.dag_id, analysis.run_id)
        except WorkflowError as exc:
            analysis.status, analysis.task_finished = before, finished
            db.commit()
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        if inputs_done:  # generate_and_run cancelled in its losses stage: its input files stay usable
            _record_inputs(settings, gateway, analysis)
        db.flush()
        return _detail(request, db, settings, analysis)


_cancel("cancel", "Cancel input generation or the run, whichever is active")
_cancel("cancel_generate_inputs", "Cancel input generation")
_cancel("cancel_analysis_run", "Cancel the losses run")


@router.post("/{analysis_pk}/copy/", status_code=status.HTTP_201_CREATED,
             summary="A NEW copy with the same settings (optional name, portfolio, model)")
def copy_analysis(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                  body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
    source = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    body = body or {}
    portfolio = _portfolio_for(db, int(body["portfolio"]), caller) if body.get("portfolio") else source.portfolio
    if not may_change(portfolio, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of portfolio {portfolio.id}'s groups")
    analysis = new_analysis(db, caller, settings, name=str(body.get("name") or f"{source.name} - Copy"),
                            portfolio=portfolio, model_pk=int(body.get("model") or source.model_id),
                            priority=source.priority, analysis_settings=source.settings)
    analysis.chunking = source.chunking
    db.flush()
    return analysis_json(request, analysis, db, [])


@router.get("/{analysis_pk}/sub_task_list/", summary="Sub-tasks of the current DAG run (its task instances)")
def sub_task_list(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep,
                  subtask_status: str | None = None, subtask_slug: str | None = None) -> list[dict[str, Any]]:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    tasks = sub_tasks(gateway_of(request), analysis, api_base(request))
    if subtask_status:
        tasks = [t for t in tasks if t["status"] == subtask_status]
    if subtask_slug:
        tasks = [t for t in tasks if t["slug"] == subtask_slug]
    return tasks


# ----------------------------------------------------------------------------- settings and chunking


def validate_analysis_settings(data: dict[str, Any]) -> dict[str, list[str]]:
    """ods-tools' analysis settings schema and checks; ``{field: [messages]}`` (empty when valid)."""
    data = dict(data)
    # legacy keys, kept in step with the new ones as the reference does
    for old, new in (("module_supplier_id", "model_supplier_id"), ("model_version_id", "model_name_id")):
        if old in data and new not in data:
            data[new] = data[old]
    from perilflow.plugins.api.schemas import ods_settings_errors, settings_handler

    return ods_settings_errors(settings_handler("analysis"), data)


def _raise_for_settings(data: dict[str, Any]) -> None:
    errors = validate_analysis_settings(data)
    if errors:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, errors)


@router.get("/{analysis_pk}/settings/", summary="The analysis settings JSON")
def get_settings(analysis_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    if analysis.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no settings")
    return analysis.settings


@router.post("/{analysis_pk}/settings/", summary="Set the analysis settings (ods-tools schema; 400 names fields)")
def post_settings(analysis_pk: int, db: DbDep, caller: CallerDep, data: Annotated[dict[str, Any], Body()]
                  ) -> dict[str, Any]:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    _raise_for_settings(data)
    analysis.settings = data
    return data


@router.delete("/{analysis_pk}/settings/", status_code=status.HTTP_204_NO_CONTENT)
def delete_settings(analysis_pk: int, db: DbDep, caller: CallerDep) -> Response:
    get_changeable(db, Analysis, analysis_pk, caller, WHAT).settings = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{analysis_pk}/chunking_configuration/", summary="Chunking: the analysis's override, else the model's")
def get_chunking(analysis_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    return ChunkingIn(**{**(analysis.model.chunking or {}), **(analysis.chunking or {})}).model_dump()


@router.post("/{analysis_pk}/chunking_configuration/", summary="Set this analysis's chunking override")
def post_chunking(analysis_pk: int, body: ChunkingIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    analysis.chunking = body.model_dump()
    return analysis.chunking


# ----------------------------------------------------------------------------- files of the run

_DOWNLOADS = {
    "input_file": ("input_file", "inputs.tar.gz", "application/gzip"),
    "output_file": ("output_file", "outputs.tar.gz", "application/gzip"),
    "lookup_errors_file": ("lookup_errors_file", "keys-errors.csv", "text/csv"),
    "lookup_success_file": ("lookup_success_file", "keys.csv", "text/csv"),
    "lookup_validation_file": ("lookup_validation_file", "exposure_summary_report.json", "application/json"),
    "summary_levels_file": ("summary_levels_file", "exposure_summary_levels.json", "application/json"),
    "run_traceback_file": ("run_traceback_file", "run_traceback.txt", "text/plain"),
    "input_generation_traceback_file": ("input_generation_traceback_file", "input_generation_traceback.txt",
                                        "text/plain"),
}


def _download_route(name: str, column: str, filename: str, media: str) -> None:
    @router.get(f"/{{analysis_pk}}/{name}/", summary=f"Download the {name.replace('_', ' ')}", name=name,
                response_model=None)
    def download(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                 ) -> Response:
        analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
        sync(db, settings, gateway_of(request), analysis)
        return files.stream(settings, getattr(analysis, column), f"analysis-{analysis.id}-{filename}", media,
                            missing=name.replace("_", " "))


for _name, (_column, _filename, _media) in _DOWNLOADS.items():
    _download_route(_name, _column, _filename, _media)


# ----------------------------------------------------------------------------- progress and tarballs


@router.get("/{analysis_pk}/run_progress/", summary="Progress of the losses chunks (\"n/m gul stages complete\")")
def run_progress(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                 ) -> dict[str, Any]:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    gateway = gateway_of(request)
    sync(db, settings, gateway, analysis)
    tis = gateway.task_instances(analysis.dag_id, analysis.run_id) if analysis.run_id and analysis.dag_id else []
    chunks = [ti for ti in tis if ti.task_id in ("generate-losses-chunk", "generate-losses") and ti.state != "skipped"]
    done = sum(ti.state == "success" for ti in chunks)
    tasks = [_sub_task_json(ti, analysis) for ti in tis]
    return {"id": analysis.id, "status": analysis.status, "completed": done, "total": len(chunks),
            "progress": f"{done}/{len(chunks)} gul stages complete",
            "sub_tasks_completed": sum(t["status"] == "COMPLETED" for t in tasks), "sub_tasks_total": len(tasks)}


def _tar_members(settings: ApiSettings, uri: str | None, what: str) -> tuple[Any, list[Any]]:
    import tarfile

    from perilflow.kernel.storage import TAR_READ_ERRORS, StorageError, safe_tar_members

    if not uri:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} for this analysis")
    source = files.storage_path(settings, uri)
    if not source.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {what} is no longer in storage ({uri})")
    handle = source.open("rb")
    try:
        archive = tarfile.open(fileobj=handle, mode="r:*")
        try:
            # the upload limit also caps what the API unpacks (a zip bomb stops at its header)
            members = safe_tar_members(archive, what, settings.max_upload_bytes)
        except StorageError as exc:
            archive.close()
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except TAR_READ_ERRORS as exc:
        handle.close()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the {what} is not a readable tar archive ({exc})") from None
    except BaseException:
        handle.close()
        raise
    return (archive, handle), members


def _tar_routes(name: str, column: str) -> None:
    what = name.replace("_", " ")

    @router.get(f"/{{analysis_pk}}/{name}_tar_list/", summary=f"Files inside the {what} tarball",
                name=f"{name}_tar_list")
    def tar_list(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                 ) -> list[str]:
        analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
        sync(db, settings, gateway_of(request), analysis)
        (archive, handle), members = _tar_members(settings, getattr(analysis, column), what)
        try:
            return [m.name.removeprefix("./") for m in members if m.isfile()]
        finally:
            archive.close()
            handle.close()

    @router.get(f"/{{analysis_pk}}/{name}_tar_extract/", summary=f"One file from the {what} tarball (?filename=)",
                name=f"{name}_tar_extract", response_model=None)
    def tar_extract(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                    filename: str) -> Response:
        from pathlib import PurePosixPath

        analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
        wanted = PurePosixPath(filename)
        if wanted.is_absolute() or ".." in wanted.parts or not filename.strip():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {"filename": [
                f"{filename!r} is not a relative path inside the tarball; take one from {name}_tar_list/"]})
        sync(db, settings, gateway_of(request), analysis)
        (archive, handle), members = _tar_members(settings, getattr(analysis, column), what)
        from perilflow.kernel.storage import TAR_READ_ERRORS

        try:
            match = next((m for m in members if m.isfile() and PurePosixPath(m.name.removeprefix("./")) == wanted),
                         None)
            if match is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"{filename} is not in the {what}")
            try:
                data = archive.extractfile(match).read()  # type: ignore[union-attr]
            except TAR_READ_ERRORS as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                    f"the {what} is not a readable tar archive ({exc})") from None
        finally:
            archive.close()
            handle.close()
        import mimetypes

        from perilflow.operators.storage import safe_name

        media = mimetypes.guess_type(wanted.name)[0] or "application/octet-stream"
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{safe_name(wanted.name)}"'})


_tar_routes("input_file", "input_file")
_tar_routes("output_file", "output_file")


# ----------------------------------------------------------------------------- resume (issue 8)

RESUMABLE = {S.INPUTS_GENERATION_ERROR: S.INPUTS_GENERATION_STARTED, S.RUN_ERROR: S.RUN_STARTED}


@router.post("/{analysis_pk}/resume/", summary="Re-run only the failed part of the failed run "
             "(its failed and stopped task instances; finished chunks are kept)")
def resume(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
           ) -> dict[str, Any]:
    from perilflow.plugins.api.gateway import resume_targets

    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    gateway = gateway_of(request)
    sync(db, settings, gateway, analysis)
    if analysis.status not in RESUMABLE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"analysis status is {analysis.status}; resume is allowed only "
                            f"from {', '.join(sorted(RESUMABLE))} (start a new run with generate_inputs/ or run/)")
    if not may_change(analysis.model, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of model {analysis.model_id}'s groups")
    info = gateway.run_info(analysis.dag_id, analysis.run_id) if analysis.dag_id and analysis.run_id else None
    if info is None or info.state != "failed":
        state = "gone from Airflow (airflow db clean?)" if info is None else info.state
        raise HTTPException(status.HTTP_409_CONFLICT, f"the analysis's DAG run {analysis.run_id} is {state}; only a "
                            "failed run can be resumed: start a new run with generate_inputs/ or run/")
    if not resume_targets(gateway.task_instances(analysis.dag_id, analysis.run_id)):
        raise HTTPException(status.HTTP_409_CONFLICT, f"DAG run {analysis.run_id} has no failed task to re-run "
                            "(it was cancelled); start a new run with generate_inputs/ or run/")
    # as cancel: commit first, the run's listener (this process) updates this row when the run restarts
    db.commit()
    try:
        gateway.resume(analysis.dag_id, analysis.run_id)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if analysis.status == S.RUN_ERROR:
        analysis.run_traceback_file = None
    else:
        analysis.input_generation_traceback_file = None
    analysis.status = RESUMABLE[S(analysis.status)]
    analysis.task_finished = None
    db.flush()
    return _detail(request, db, settings, analysis)


# ----------------------------------------------------------------------------- settings as a file


@router.get("/{analysis_pk}/settings_file/", summary="The analysis settings as a JSON file", response_model=None)
def get_settings_file(analysis_pk: int, db: DbDep, caller: CallerDep) -> Response:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    if analysis.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no settings file")
    return Response(json.dumps(analysis.settings, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="analysis-{analysis.id}-settings.json"'})


@router.post("/{analysis_pk}/settings_file/",
             summary="Upload the analysis settings file (multipart field `file`, JSON, ods-tools schema)")
def post_settings_file(request: Request, analysis_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
                       settings: SettingsDep) -> dict[str, Any]:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    data = files.read_json_upload(settings, file)
    _raise_for_settings(data)
    analysis.settings = data
    db.flush()
    return {"created": analysis.modified, "file": f"{api_base(request)}/v2/analyses/{analysis.id}/settings_file/",
            "filename": file.filename or "analysis_settings.json", "content_type": "application/json"}


@router.delete("/{analysis_pk}/settings_file/", status_code=status.HTTP_204_NO_CONTENT)
def delete_settings_file(analysis_pk: int, db: DbDep, caller: CallerDep) -> Response:
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    if analysis.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no settings file")
    analysis.settings = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ----------------------------------------------------------------------------- more files of the run

#: the reference's DELETE-able file routes (GET DELETE): the column to clear and its file
_DELETABLE = ("output_file", "run_traceback_file", "input_generation_traceback_file")


def _idle_changeable(request: Request, db: Session, settings: ApiSettings, caller: Caller, analysis_pk: int,
                     removing: str) -> Analysis:
    """The analysis, if the caller may change it and no run of it is active (409 naming what would be removed)."""
    analysis = get_changeable(db, Analysis, analysis_pk, caller, WHAT)
    sync(db, settings, gateway_of(request), analysis)
    if analysis.status in ACTIVE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"analysis status is {analysis.status}; cancel it or wait for "
                            f"it to finish before removing {removing}")
    return analysis


def _delete_route(name: str) -> None:
    @router.delete(f"/{{analysis_pk}}/{name}/", status_code=status.HTTP_204_NO_CONTENT, name=f"delete_{name}",
                   summary=f"Remove the {name.replace('_', ' ')} (409 while the analysis runs)")
    def delete(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
               ) -> Response:
        analysis = _idle_changeable(request, db, settings, caller, analysis_pk, "its files")
        uri = getattr(analysis, name)
        if not uri:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no {name.replace('_', ' ')}")
        setattr(analysis, name, None)
        files.remove_after_commit(db, uri)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


for _name in _DELETABLE:
    _delete_route(_name)


def _run_logs(settings: ApiSettings, analysis: Analysis) -> tuple[Any, list[Any]]:
    folder = files.storage_path(settings, f"{_folder(settings, analysis, 'losses')}/logs")
    logs = sorted((p for p in folder.iterdir() if p.name.endswith(".log")), key=lambda p: p.name) \
        if _had_losses_run(analysis) and folder.exists() else []
    return folder, logs


@router.get("/{analysis_pk}/run_log_file/", summary="The logs of the losses run's model steps, one after another",
            response_model=None)
def run_log_file(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                 ) -> Response:
    from fastapi.responses import StreamingResponse

    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    sync(db, settings, gateway_of(request), analysis)
    _, logs = _run_logs(settings, analysis)
    if not logs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no run log: its losses run has "
                            "not ended, or the logs were removed")

    def body() -> Any:
        for path in logs:
            yield f"==> {path.name} <==\n".encode()
            with path.open("rb") as handle:
                while piece := handle.read(files.CHUNK):
                    yield piece
            yield b"\n"

    return StreamingResponse(body(), media_type="text/plain", headers={
        "Content-Disposition": f'attachment; filename="analysis-{analysis.id}-run_log.txt"'})


@router.delete("/{analysis_pk}/run_log_file/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove the losses run's logs (409 while the analysis runs)")
def delete_run_log_file(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                        ) -> Response:
    analysis = _idle_changeable(request, db, settings, caller, analysis_pk, "its logs")
    folder, logs = _run_logs(settings, analysis)
    if not logs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {analysis_pk} has no run log")
    folder.rmdir(recursive=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{analysis_pk}/storage_links/", summary="Storage keys of the analysis's files (relative to the "
                                                     "storage base when inside it)")
def storage_links(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                  ) -> dict[str, Any]:
    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    sync(db, settings, gateway_of(request), analysis)
    links = {name: files.storage_key(settings, getattr(analysis, name)) for name in FILE_FIELDS}
    return {**links, "settings_file": None,
            "run_log_file": (f"{files.storage_key(settings, _folder(settings, analysis, 'losses'))}/logs/"
                             if _had_losses_run(analysis) else None)}


@router.get("/{analysis_pk}/data_files/", summary="The analysis's complex model data files")
def analysis_data_file_list(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep) -> list[dict[str, Any]]:
    from perilflow.plugins.api.routes.data_files import data_file_json

    analysis = get_visible(db, Analysis, analysis_pk, caller, WHAT)
    return [data_file_json(request, d) for d in analysis.complex_model_data_files]
