"""The Perilflow pages: analyses list and analysis view, server-rendered HTML under ``/perilflow/ui/``
(algorithm tasks: :mod:`perilflow.plugins.ui.algorithm_pages`, on the same router).

Same auth as the API (the routes depend on :data:`CallerDep`, i.e. Airflow's ``GetUserDep``):
inside Airflow's UI the browser sends the auth manager's ``_token`` cookie, so the page, its
download links (the API's own routes) and its refreshes need no other login. Errors of these
routes are answered as HTML (:func:`error_page`): 401/403 with a link to Airflow's login.

No script or style is fetched from anywhere: CSS is inline, the one script only reloads the
page while an analysis is active, and the EP chart is inline SVG from :mod:`perilflow.report`.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from perilflow.plugins.api.auth import Caller, CallerDep, DbDep, SettingsDep, api_base, get_visible, visible
from perilflow.plugins.api.pagination import count_rows
from perilflow.plugins.api.routes.analyses import gateway_of, sub_tasks, sync
from perilflow.plugins.api.status import ACTIVE
from perilflow.plugins.db.models import Analysis, as_utc
from perilflow.plugins.ui.results import ResultsUnavailable, load_results
from perilflow.report import html_report, report_sections

T = TypeVar("T")

#: The UI's path inside the Perilflow app (mounted at /perilflow on the api-server).
UI_PREFIX = "/ui"
#: The API's mount point on Airflow's api-server (plugin.URL_PREFIX; repeated to avoid importing Airflow's plugin).
API_MOUNT = "/perilflow"
PAGE_SIZE = 50
REFRESH_SECONDS = 5

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
esc = html.escape

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1a202c; background: #fff; }
header { padding: 0.8em 1.5em; border-bottom: 1px solid #e2e8f0; display: flex; gap: 1.5em; align-items: baseline; }
header a.home { font-weight: bold; font-size: 1.2em; color: #017cee; text-decoration: none; }
main { padding: 1em 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e2e8f0; text-align: left; vertical-align: top; }
td.num, table.results td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.results tr.block td { border-top: 2px solid #a0aec0; }
.badge { display: inline-block; padding: 0.1em 0.5em; border-radius: 0.7em; font-size: 0.85em; color: #fff;
         background: #718096; }
.badge.ok { background: #2f855a; } .badge.err { background: #c53030; } .badge.run { background: #2b6cb0; }
.badge.stop { background: #c05621; }
progress { width: 8em; vertical-align: middle; }
p.note, .muted { color: #4a5568; font-size: 0.9em; }
ul.downloads { padding-left: 1.2em; }
a { color: #2b6cb0; }
"""

_REFRESH_JS = """
<script>
(function () {
  var box = document.getElementById("autorefresh");
  var timer = null;
  function arm() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box && box.checked) { timer = setTimeout(function () { location.reload(); }, %d); }
  }
  if (box) { box.addEventListener("change", arm); }
  arm();
})();
</script>
"""


def badge(value: str | None) -> str:
    value = value or "NEW"
    # analyses' statuses (RUN_COMPLETED, ...) and algorithm tasks' (SUCCEEDED, FAILED, RUNNING, ...)
    kind = ("ok" if value.endswith("COMPLETED") or value in ("READY", "SUCCEEDED") else
            "err" if value.endswith("ERROR") or value.endswith("NO_KEYS") or value == "FAILED" else
            "stop" if value.endswith("CANCELLED") else
            "run" if value.endswith("STARTED") or value == "RUNNING" else "")
    return f'<span class="badge {kind}">{esc(value)}</span>'


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    return esc(as_utc(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max((as_utc(end) - as_utc(start)).total_seconds(), 0.0)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _progress(tasks: list[dict[str, Any]]) -> str:
    done = sum(t["status"] == "COMPLETED" for t in tasks)
    total = len(tasks)
    if not total:
        return '<span class="muted">no sub-tasks</span>'
    return (f'<progress value="{done}" max="{total}"></progress> '
            f'<span class="progress-text">{done}/{total}</span>')


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "").rstrip("/")


def airflow_root(request: Request) -> str:
    """Airflow's base path: the app's mount path without ``/perilflow`` (empty at the server root)."""
    root = _root_path(request)
    return root[: -len(API_MOUNT)] if root.endswith(API_MOUNT) else root


def ui_url(request: Request, path: str = "/") -> str:
    """A path of this UI as the browser sees it (mount prefix included)."""
    return f"{_root_path(request)}{UI_PREFIX}{path}"


def task_log_url(request: Request, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Airflow 3's task instance page (its default tab is the log)."""
    url = f"{airflow_root(request)}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/" \
          f"{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index >= 0 else url


def login_url(request: Request) -> str:
    """The auth manager's login page, coming back here afterwards."""
    next_url = str(request.url)
    try:
        from airflow.api_fastapi.app import get_auth_manager

        url = get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - no auth manager in this process (tests, a standalone app)
        url = f"/auth/login?{urlencode({'next': next_url})}"
    return f"{airflow_root(request)}{url}" if url.startswith("/") else url


def html_page(request: Request, title: str, body: str, status_code: int = 200, refresh: bool = False) -> HTMLResponse:
    script = ""
    if refresh:
        body = (f'<p class="muted"><label><input type="checkbox" id="autorefresh" checked> refresh every '
                f"{REFRESH_SECONDS} s while it runs</label></p>{body}")
        script = _REFRESH_JS % (REFRESH_SECONDS * 1000)
    text = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)} - Perilflow</title><style>{_CSS}</style></head><body>"
            f'<header><a class="home" href="{esc(ui_url(request))}">Perilflow</a>'
            f'<nav><a href="{esc(ui_url(request))}">analyses</a> · '
            f'<a href="{esc(ui_url(request, "/algorithm-tasks/"))}">algorithm tasks</a></nav>'
            f"</header><main>{body}</main>{script}</body></html>\n")
    return HTMLResponse(text, status_code=status_code)


def visible_page(db: Session, entity: type[T], caller: Caller, offset: int) -> tuple[list[T], int]:
    """One page of the ``entity`` rows the caller may see (``PAGE_SIZE``, newest first, from ``offset``)
    and how many there are in all."""
    stmt = select(entity)
    clause = visible(entity, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    rows = db.scalars(stmt.order_by(entity.id.desc()).limit(PAGE_SIZE).offset(offset))  # type: ignore[attr-defined]
    return list(rows), count_rows(db, stmt)


def list_body(title: str, noun: str, caller: Any, offset: int, shown: int, total: int, listing: str) -> str:
    """A list page's heading, "1-50 of 120 <noun> visible to <user>", newer/older links, then ``listing``."""
    pager = []
    if offset > 0:
        pager.append(f'<a href="?offset={max(offset - PAGE_SIZE, 0)}">newer</a>')
    if offset + PAGE_SIZE < total:
        pager.append(f'<a href="?offset={offset + PAGE_SIZE}">older</a>')
    count = f"{offset + 1}-{offset + shown} of {total}" if shown else "0"
    return (f"<h1>{esc(title)}</h1><p class=\"muted\">{count} {noun} visible to {esc(caller.name)}. "
            f"{' · '.join(pager)}</p>{listing}")


def table(css_class: str, headers: list[str], rows: list[str], empty: str) -> str:
    """``rows`` (``<tr>`` strings) under ``headers``, or the ``empty`` paragraph when there are none."""
    if not rows:
        return f'<p class="muted">{empty}</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def facts_table(facts: list[tuple[str, str]]) -> str:
    """The label / value table at the top of an object's page (values are HTML)."""
    return '<table class="facts">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>"


def downloads(items: list[str]) -> str:
    """The Downloads section: ``items`` (``<li>`` strings), or "No files yet."."""
    return "<h2>Downloads</h2>" + (f'<ul class="downloads">{"".join(items)}</ul>' if items
                                   else '<p class="muted">No files yet.</p>')


def is_ui_request(request: Request) -> bool:
    """True when the request is for one of these pages (their errors are answered as HTML)."""
    path = str(request.scope.get("path") or "")
    root = _root_path(request)
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def error_page(request: Request, exc: HTTPException) -> HTMLResponse:
    """An error of a UI route as a page; 401/403 (no or bad token) link to Airflow's login."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN) and detail in (
            "Not authenticated", "Invalid JWT token", "Token Expired"):
        body = (f"<h1>Log in to see Perilflow</h1><p>{esc(detail)}: Perilflow uses Airflow's login.</p>"
                f'<p><a id="login" href="{esc(login_url(request))}" target="_top">Log in to Airflow</a></p>')
        return html_page(request, "Log in", body, exc.status_code)
    body = (f"<h1>{exc.status_code}</h1><p>{esc(detail)}</p>"
            f'<p><a href="{esc(ui_url(request))}">All analyses</a></p>')
    return html_page(request, f"Error {exc.status_code}", body, exc.status_code)


@router.get("/icon.svg", summary="The nav icon (no token: Airflow's UI loads it as an image)")
async def icon() -> Response:
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#017cee" '
           'stroke-width="2"><path d="M3 20 L8 12 L12 15 L17 6 L21 9"/><path d="M3 3 V21 H21"/></svg>')
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def _model_label(analysis: Analysis) -> str:
    m = analysis.model
    return f"{m.supplier_id}/{m.model_id}/{m.version_id}" if m else str(analysis.model_id)


@router.get("/", response_class=HTMLResponse, summary="Analyses, newest first, with status and sub-task progress")
def analyses_page(request: Request, db: DbDep, caller: CallerDep, settings: SettingsDep,
                  offset: Annotated[int, Query(ge=0)] = 0) -> HTMLResponse:
    analyses, total = visible_page(db, Analysis, caller, offset)
    gateway = gateway_of(request)
    rows, active = [], False
    for a in analyses:
        sync(db, settings, gateway, a)
        tasks = sub_tasks(gateway, a)
        active = active or a.status in ACTIVE
        link = ui_url(request, f"/analyses/{a.id}/")
        rows.append(
            f'<tr data-analysis="{a.id}"><td class="num">{a.id}</td><td><a href="{esc(link)}">{esc(a.name)}</a></td>'
            f"<td>{badge(a.status)}</td><td>{_progress(tasks)}</td><td>{esc(_model_label(a))}</td>"
            f"<td>{esc(a.portfolio.name if a.portfolio else str(a.portfolio_id))}</td>"
            f"<td>{when(a.created)}</td><td>{when(a.task_finished)}</td></tr>")
    listed = table("analyses", ["id", "name", "status", "sub-tasks done", "model", "portfolio", "created", "finished"],
                   rows, "No analyses yet. Create one with the API (<code>POST /perilflow/v2/analyses/</code>) or "
                   "<code>perilflow analyses create</code>.")
    body = list_body("Analyses", "analyses", caller, offset, len(analyses), total, listed)
    return html_page(request, "Analyses", body, refresh=active)


_DOWNLOADS = (("output_file", "Outputs (ORD files, tar.gz)"), ("input_file", "Oasis input files (tar.gz)"),
              ("lookup_success_file", "Keys (csv)"), ("lookup_errors_file", "Keys errors (csv)"),
              ("lookup_validation_file", "Exposure summary report (json)"),
              ("summary_levels_file", "Summary levels (json)"),
              ("run_traceback_file", "Run traceback"),
              ("input_generation_traceback_file", "Input generation traceback"))


def _results_html(request: Request, settings: Any, analysis: Analysis) -> str:
    if not analysis.output_file:
        return '<h2>Results</h2><p class="muted">No results yet: they appear when the losses run has completed.</p>'
    try:
        results = load_results(settings, analysis.output_file, analysis.settings)
    except ResultsUnavailable as exc:
        return (f'<h2>Results</h2><p class="note" id="results-unavailable">Results cannot be shown: '
                f"{esc(str(exc))}</p>")
    report = ui_url(request, f"/analyses/{analysis.id}/report.html")
    return (f'<div id="results">{report_sections(results)}</div>'
            f'<p><a href="{esc(report)}" download>Download this report (HTML)</a></p>')


@router.get("/analyses/{analysis_pk}/", response_class=HTMLResponse,
            summary="One analysis: status, sub-tasks with their Airflow logs, results, downloads")
def analysis_page(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep,
                  settings: SettingsDep) -> HTMLResponse:
    a = get_visible(db, Analysis, analysis_pk, caller, "analysis")
    gateway = gateway_of(request)
    sync(db, settings, gateway, a)
    tasks = sub_tasks(gateway, a)
    api = f"{api_base(request)}/v2/analyses/{a.id}"

    facts = [("Status", badge(a.status)), ("Sub-tasks done", _progress(tasks)),
             ("Model", esc(_model_label(a))),
             ("Portfolio", esc(a.portfolio.name if a.portfolio else str(a.portfolio_id))),
             ("Priority", str(a.priority)), ("Created", when(a.created)), ("Started", when(a.task_started)),
             ("Finished", when(a.task_finished))]
    if a.dag_id and a.run_id:
        run = f"{airflow_root(request)}/dags/{quote(a.dag_id, safe='')}/runs/{quote(a.run_id, safe='')}"
        facts.append(("Airflow run", f'<a href="{esc(run)}" target="_top">{esc(a.dag_id)} / {esc(a.run_id)}</a>'))
    body = [f"<h1>{esc(a.name)} <span class=\"muted\">#{a.id}</span></h1>", facts_table(facts),
            downloads([f'<li><a class="download" data-file="{name}" href="{esc(f"{api}/{name}/")}">{esc(label)}'
                       "</a></li>" for name, label in _DOWNLOADS if getattr(a, name)])]
    body.append(_results_html(request, settings, a))

    rows = []
    for t in tasks:
        log = task_log_url(request, a.dag_id or "", a.run_id or "", t["task_id"].split("/")[2], t["map_index"])
        rows.append(f'<tr data-slug="{esc(t["slug"])}"><td>{esc(t["slug"])}</td><td>{badge(t["status"])}</td>'
                    f'<td class="num">{t["try_number"]}</td><td>{when(t["start_time"])}</td>'
                    f'<td class="num">{duration(t["start_time"], t["end_time"])}</td>'
                    f'<td><a class="log" href="{esc(log)}" target="_top">log</a></td></tr>')
    body.append("<h2>Sub-tasks</h2>" + table("subtasks", ["sub-task", "status", "try", "started", "took", "Airflow"],
                                             rows, "No sub-tasks: the analysis has not been started."))
    return html_page(request, a.name, "\n".join(body), refresh=a.status in ACTIVE)


@router.get("/analyses/{analysis_pk}/report.html", response_class=HTMLResponse,
            summary="The analysis's results as one self-contained HTML file")
def analysis_report(request: Request, analysis_pk: int, db: DbDep, caller: CallerDep,
                    settings: SettingsDep) -> HTMLResponse:
    a = get_visible(db, Analysis, analysis_pk, caller, "analysis")
    sync(db, settings, gateway_of(request), a)
    if not a.output_file:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"analysis {a.id} has no output file yet; run it first")
    try:
        results = load_results(settings, a.output_file, a.settings)
    except ResultsUnavailable as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    text = html_report(results, title=f"{a.name} (analysis {a.id})", subtitle=f"model {_model_label(a)}")
    return HTMLResponse(text, headers={"Content-Disposition": f'attachment; filename="analysis-{a.id}-report.html"'})
