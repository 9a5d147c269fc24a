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

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import CallerDep, DbDep, SettingsDep, api_base
from perilflow.plugins.api.routes.algorithms import ACTIVE, RUN_TASK, gateway_of, sync, synced
from perilflow.plugins.db.algorithms import AlgorithmTask
from perilflow.plugins.settings import ApiSettings
from perilflow.plugins.ui.pages import (
    badge,
    downloads,
    duration,
    esc,
    facts_table,
    html_page,
    list_body,
    router,
    table,
    task_log_url,
    ui_url,
    visible_page,
    when,
)

#: how much of the end of an output log the task's page shows (the whole log downloads from the API)
LOG_TAIL_BYTES = 64 * 1024


def log_tail(settings: ApiSettings, uri: str, limit: int = LOG_TAIL_BYTES) -> tuple[str, int, int]:
    """The last ``limit`` bytes of the log at ``uri`` as text (from a line start when cut), how many bytes
    that text came from, and the log's size."""
    with files.storage_path(settings, uri).open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(size - limit, 0))
        data = handle.read()
    if size > limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # a cut line's end would read as a line of its own
    return data.decode("utf-8", errors="replace"), len(data), size


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _algorithm_label(t: AlgorithmTask) -> str:
    return t.algorithm.name if t.algorithm else str(t.algorithm_id)


@router.get("/algorithm-tasks/", response_class=HTMLResponse,
            summary="Algorithm tasks, newest first, with status, exit code and timing")
def algorithm_tasks_page(request: Request, db: DbDep, caller: CallerDep, settings: SettingsDep,
                         offset: Annotated[int, Query(ge=0)] = 0) -> HTMLResponse:
    shown, total = visible_page(db, AlgorithmTask, caller, offset)
    gateway = gateway_of(request)
    rows, active = [], False
    for t in shown:
        sync(db, settings, gateway, t)
        active = active or t.status in ACTIVE
        link = ui_url(request, f"/algorithm-tasks/{t.id}/")
        exit_code = "" if t.exit_code is None else str(t.exit_code)
        rows.append(
            f'<tr data-task="{t.id}"><td class="num">{t.id}</td><td><a href="{esc(link)}">{esc(t.name)}</a></td>'
            f"<td>{esc(_algorithm_label(t))}</td><td>{badge(t.status)}</td><td class=\"num\">{exit_code}</td>"
            f"<td>{when(t.queued_at)}</td><td class=\"num\">{duration(t.started_at, t.finished_at)}</td></tr>")
    listed = table("algorithm-tasks", ["id", "name", "algorithm", "status", "exit code", "queued", "ran for"], rows,
                   "No algorithm tasks yet. Create one with the API (<code>POST /perilflow/v2/algorithm-tasks/</code>) "
                   "or <code>perilflow algorithms run</code>.")
    body = list_body("Algorithm tasks", "algorithm tasks", caller, offset, len(shown), total, listed)
    return html_page(request, "Algorithm tasks", body, refresh=active)


def _log_html(settings: ApiSettings, t: AlgorithmTask, api: str) -> str:
    if not t.output_log:
        why = ("it is kept when the algorithm ends" if t.status in ACTIVE else
               "the task has not run" if t.status == "CREATED" else "none was collected")
        return f'<h2>Output log</h2><p class="muted" id="no-log">No output log ({why}).</p>'
    try:
        text, shown, size = log_tail(settings, t.output_log)
    except OSError as exc:  # gone from storage, or storage down: say so, keep the rest of the page
        return (f'<h2>Output log</h2><p class="note" id="log-unavailable">The output log cannot be read: '
                f"{esc(str(exc))}</p>")
    cut = (f'<p class="muted">The last {shown:,} of {size:,} bytes; '
           f'<a href="{esc(api)}/output_log/">the whole log</a>.</p>') if size > LOG_TAIL_BYTES else ""
    return f'<h2>Output log</h2>{cut}<pre id="output-log">{esc(text)}</pre>'


@router.get("/algorithm-tasks/{task_pk}/", response_class=HTMLResponse,
            summary="One algorithm task: status, algorithm, timing, output log and output dataset")
def algorithm_task_page(request: Request, task_pk: int, db: DbDep, caller: CallerDep,
                        settings: SettingsDep) -> HTMLResponse:
    t = synced(request, db, settings, task_pk, caller)
    api = f"{api_base(request)}/v2/algorithm-tasks/{t.id}"
    a = t.algorithm
    image = a.docker_image.image if a is not None and a.docker_image is not None else None
    facts: list[tuple[str, str]] = [("Status", badge(t.status))]
    if t.exit_code is not None:
        facts.append(("Exit code", str(t.exit_code)))
    if t.error:
        facts.append(("Error", f'<span id="error">{esc(t.error)}</span>'))
    facts += [("Algorithm", esc(_algorithm_label(t)) + (f' <span class="muted">{esc(image)}</span>' if image else "")),
              ("Command", f"<code>{esc(' '.join(a.command))}</code>" if a is not None else ""),
              ("Input dataset", _dataset_link(request, t.input_dataset)),
              ("Created", when(t.created)), ("Queued", when(t.queued_at)), ("Started", when(t.started_at)),
              ("Finished", when(t.finished_at)), ("Waited", duration(t.queued_at, t.started_at)),
              ("Ran for", duration(t.started_at, t.finished_at))]
    if t.dag_id and t.run_id:
        log = task_log_url(request, t.dag_id, t.run_id, RUN_TASK, -1)
        facts.append(("Airflow run", f'<a href="{esc(log)}" target="_top">{esc(t.dag_id)} / {esc(t.run_id)}</a>'))
    items = []
    if t.output_log:
        items.append(f'<li><a class="download" data-file="output_log" href="{esc(api)}/output_log/">'
                     "Output log (text)</a></li>")
    out = t.output_dataset
    if out is not None:
        base = f"{api_base(request)}/v2/datasets/{out.id}"
        items.append(f'<li><a class="download" data-file="output_dataset" href="{esc(base)}/download/">'
                     f"Output dataset #{out.id}: {_files(len(out.files))} (tar.gz)</a><ul>"
                     + "".join(f'<li><a href="{esc(base)}/files/{f.id}/">{esc(f.name)}</a> '
                               f'<span class="muted">{f.size:,} bytes</span></li>' for f in out.files)
                     + "</ul></li>")
    body = [f'<h1>{esc(t.name)} <span class="muted">algorithm task #{t.id}</span></h1>', facts_table(facts),
            downloads(items), _log_html(settings, t, api)]
    return html_page(request, t.name, "\n".join(body), refresh=t.status in ACTIVE)


def _dataset_link(request: Request, dataset: Any) -> str:
    if dataset is None:
        return '<span class="muted">none</span>'
    href = f"{api_base(request)}/v2/datasets/{dataset.id}/download/"
    return f'<a href="{esc(href)}">{esc(dataset.name)}</a> <span class="muted">{_files(len(dataset.files))}</span>'

