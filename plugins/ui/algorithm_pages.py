"""Algorithm task pages (issue 9): the list and one task's view, under ``/perilflow/ui/algorithm-tasks/``.

Same auth and look as the analyses pages (:mod:`perilflow.plugins.ui.pages`): a user sees the
tasks of their groups. Each page moves the tasks it shows on from their DAG runs first (the
API's ``sync``), so the page is as current as ``GET /v2/algorithm-tasks/{id}/``. A task's view
shows the tail of its output log inline, so a failed algorithm's error is on the page; the
whole log and the output dataset download through the API's own routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import CallerDep, DbDep, SettingsDep, api_base, get_visible, visible
from perilflow.plugins.api.routes.algorithms import ACTIVE, RUN_TASK, gateway_of, sync
from perilflow.plugins.db.algorithms import AlgorithmTask
from perilflow.plugins.settings import ApiSettings
from perilflow.plugins.ui.pages import (
    PAGE_SIZE,
    _badge,
    _duration,
    _page,
    _when,
    esc,
    router,
    task_log_url,
    ui_url,
)

#: how much of the end of an output log the task's page shows (the whole log downloads from the API)
LOG_TAIL_BYTES = 64 * 1024


def log_tail(settings: ApiSettings, uri: str, limit: int = LOG_TAIL_BYTES) -> tuple[str, int]:
    """The last ``limit`` bytes of the log at ``uri`` as text (from a line start when cut), and its size."""
    with files.storage_path(settings, uri).open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(size - limit, 0))
        data = handle.read()
    if size > limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # a cut line's end would read as a line of its own
    return data.decode("utf-8", errors="replace"), size


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _algorithm_label(t: AlgorithmTask) -> str:
    return t.algorithm.name if t.algorithm else str(t.algorithm_id)


@router.get("/algorithm-tasks/", response_class=HTMLResponse,
            summary="Algorithm tasks, newest first, with status, exit code and timing")
def algorithm_tasks_page(request: Request, db: DbDep, caller: CallerDep, settings: SettingsDep,
                         offset: Annotated[int, Query(ge=0)] = 0) -> HTMLResponse:
    stmt = select(AlgorithmTask)
    clause = visible(AlgorithmTask, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    shown = list(db.scalars(stmt.order_by(AlgorithmTask.id.desc()).limit(PAGE_SIZE).offset(offset)))
    gateway = gateway_of(request)
    rows, active = [], False
    for t in shown:
        sync(db, settings, gateway, t)
        active = active or t.status in ACTIVE
        link = ui_url(request, f"/algorithm-tasks/{t.id}/")
        exit_code = "" if t.exit_code is None else str(t.exit_code)
        rows.append(
            f'<tr data-task="{t.id}"><td class="num">{t.id}</td><td><a href="{esc(link)}">{esc(t.name)}</a></td>'
            f"<td>{esc(_algorithm_label(t))}</td><td>{_badge(t.status)}</td><td class=\"num\">{exit_code}</td>"
            f"<td>{_when(t.queued_at)}</td><td class=\"num\">{_duration(t.started_at, t.finished_at)}</td></tr>")
    if rows:
        table = ('<table class="algorithm-tasks"><thead><tr><th>id</th><th>name</th><th>algorithm</th>'
                 "<th>status</th><th>exit code</th><th>queued</th><th>ran for</th></tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
    else:
        table = ('<p class="muted">No algorithm tasks yet. Create one with the API (<code>POST '
                 "/perilflow/v2/algorithm-tasks/</code>) or <code>perilflow algorithms run</code>.</p>")
    pager = []
    if offset > 0:
        pager.append(f'<a href="?offset={max(offset - PAGE_SIZE, 0)}">newer</a>')
    if offset + PAGE_SIZE < total:
        pager.append(f'<a href="?offset={offset + PAGE_SIZE}">older</a>')
    count = f"{offset + 1}-{offset + len(shown)} of {total}" if shown else "0"
    body = (f'<h1>Algorithm tasks</h1><p class="muted">{count} algorithm tasks visible to {esc(caller.name)}. '
            f"{' · '.join(pager)}</p>{table}")
    return _page(request, "Algorithm tasks", body, refresh=active)


def _log_html(settings: ApiSettings, t: AlgorithmTask, api: str) -> str:
    if not t.output_log:
        why = "it is kept when the algorithm ends" if t.status in ACTIVE or t.status == "CREATED" else \
            "the algorithm did not start"
        return f'<h2>Output log</h2><p class="muted" id="no-log">No output log ({esc(why)}).</p>'
    try:
        text, size = log_tail(settings, t.output_log)
    except OSError as exc:  # gone from storage, or storage down: say so, keep the rest of the page
        return (f'<h2>Output log</h2><p class="note" id="log-unavailable">The output log cannot be read: '
                f"{esc(str(exc))}</p>")
    cut = (f'<p class="muted">The last {len(text.encode()):,} of {size:,} bytes; '
           f'<a href="{esc(api)}/output_log/">the whole log</a>.</p>') if size > LOG_TAIL_BYTES else ""
    return f'<h2>Output log</h2>{cut}<pre id="output-log">{esc(text)}</pre>'


@router.get("/algorithm-tasks/{task_pk}/", response_class=HTMLResponse,
            summary="One algorithm task: status, algorithm, timing, output log and output dataset")
def algorithm_task_page(request: Request, task_pk: int, db: DbDep, caller: CallerDep,
                        settings: SettingsDep) -> HTMLResponse:
    t = get_visible(db, AlgorithmTask, task_pk, caller, "algorithm task")
    sync(db, settings, gateway_of(request), t)
    api = f"{api_base(request)}/v2/algorithm-tasks/{t.id}"
    a = t.algorithm
    image = a.docker_image.image if a is not None and a.docker_image is not None else None
    facts: list[tuple[str, str]] = [("Status", _badge(t.status))]
    if t.exit_code is not None:
        facts.append(("Exit code", str(t.exit_code)))
    if t.error:
        facts.append(("Error", f'<span id="error">{esc(t.error)}</span>'))
    facts += [("Algorithm", esc(_algorithm_label(t)) + (f' <span class="muted">{esc(image)}</span>' if image else "")),
              ("Command", f"<code>{esc(' '.join(a.command))}</code>" if a is not None else ""),
              ("Input dataset", _dataset_link(request, t.input_dataset)),
              ("Created", _when(t.created)), ("Queued", _when(t.queued_at)), ("Started", _when(t.started_at)),
              ("Finished", _when(t.finished_at)), ("Waited", _duration(t.queued_at, t.started_at)),
              ("Ran for", _duration(t.started_at, t.finished_at))]
    if t.dag_id and t.run_id:
        log = task_log_url(request, t.dag_id, t.run_id, RUN_TASK, -1)
        facts.append(("Airflow run", f'<a href="{esc(log)}" target="_top">{esc(t.dag_id)} / {esc(t.run_id)}</a>'))
    body = [f'<h1>{esc(t.name)} <span class="muted">algorithm task #{t.id}</span></h1>',
            '<table class="facts">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>"]
    downloads = []
    if t.output_log:
        downloads.append(f'<li><a class="download" data-file="output_log" href="{esc(api)}/output_log/">'
                         "Output log (text)</a></li>")
    out = t.output_dataset
    if out is not None:
        base = f"{api_base(request)}/v2/datasets/{out.id}"
        downloads.append(f'<li><a class="download" data-file="output_dataset" href="{esc(base)}/download/">'
                         f"Output dataset #{out.id}: {_files(len(out.files))} (tar.gz)</a><ul>"
                         + "".join(f'<li><a href="{esc(base)}/files/{f.id}/">{esc(f.name)}</a> '
                                   f'<span class="muted">{f.size:,} bytes</span></li>' for f in out.files)
                         + "</ul></li>")
    body.append("<h2>Downloads</h2>" + (f'<ul class="downloads">{"".join(downloads)}</ul>' if downloads
                                        else '<p class="muted">No files yet.</p>'))
    body.append(_log_html(settings, t, api))
    return _page(request, t.name, "\n".join(body), refresh=t.status in ACTIVE)


def _dataset_link(request: Request, dataset: Any) -> str:
    if dataset is None:
        return '<span class="muted">none</span>'
    href = f"{api_base(request)}/v2/datasets/{dataset.id}/download/"
    return f'<a href="{esc(href)}">{esc(dataset.name)}</a> <span class="muted">{_files(len(dataset.files))}</span>'

