"""The algorithm task pages (issue 9) through TestClient: list, one task's view with its log, groups, escaping.

The DAG run's states are set by hand on the fake gateway and the collector's outputs are written
where it writes them, as in tests/plugins/test_algorithms.py.
"""
# ruff: noqa: F811 - the fixtures of test_algorithms are imported by name and used as arguments

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.api.routes.algorithms import ALGORITHM_TASK, RUN_TASK
from perilflow.plugins.ui import algorithm_pages
from tests.plugins.conftest import auth
from tests.plugins.test_algorithms import _run, _write_run_outputs, algorithm, dataset  # noqa: F401 - fixtures
from tests.ui.test_ui_pages import get

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def _end(gateway, run_id: str, state: str, seconds: float = 4.0) -> None:
    """The task's DAG run ended ``state`` ``seconds`` after it started."""
    key = (ALGORITHM_TASK, run_id)
    gateway.runs[key] = RunInfo(state, end_date=T0 + timedelta(seconds=seconds + 1))
    gateway.tis[key] = [TaskInstanceInfo(RUN_TASK, -1, state, 1, start_date=T0,
                                         end_date=T0 + timedelta(seconds=seconds))]


def test_list_and_view_of_a_succeeded_and_a_failed_task(client, gateway, settings, algorithm, dataset) -> None:
    ok, ok_run, ok_conf = _run(client, gateway, algorithm, dataset, name="count")
    _write_run_outputs(settings, ok, ok_conf["run_uuid"], 0, "counted 2 files\n", {"summary.csv": b"file,rows\n"})
    _end(gateway, ok_run, "success")
    bad, bad_run, bad_conf = _run(client, gateway, algorithm, dataset, name="broken")
    _write_run_outputs(settings, bad, bad_conf["run_uuid"], 3, "reading\nKeyError: 'TIV'\n", {})
    _end(gateway, bad_run, "failed", seconds=2)
    waiting, waiting_run, _ = _run(client, gateway, algorithm, dataset, name="waiting")

    page = get(client, "/ui/algorithm-tasks/", "alice")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    rows = page.text.split("<tbody>", 1)[1]
    # newest first, each synced from its DAG run as the API does
    assert rows.index(f'data-task="{waiting}"') < rows.index(f'data-task="{bad}"') < rows.index(f'data-task="{ok}"')
    assert 'badge ok">SUCCEEDED' in rows and 'badge err">FAILED' in rows and ">QUEUED<" in rows
    assert "count rows" in rows and f'href="/ui/algorithm-tasks/{ok}/"' in rows and "4 s" in rows
    assert 'id="autorefresh"' in page.text  # one task is still queued
    assert 'href="/ui/algorithm-tasks/"' in page.text and 'href="/ui/"' in page.text  # the nav

    view = get(client, f"/ui/algorithm-tasks/{ok}/", "alice").text
    assert "SUCCEEDED" in view and "python:3.11-slim" in view and "<code>python count.py</code>" in view
    assert '<pre id="output-log">counted 2 files\n</pre>' in view and "autorefresh" not in view
    output = client.get(f"/v2/algorithm-tasks/{ok}/", headers=auth("alice")).json()["output_dataset"]
    assert f'href="http://testserver/v2/datasets/{output}/download/"' in view
    assert "summary.csv" in view and "1 file (tar.gz)" in view
    assert f'href="http://testserver/v2/datasets/{dataset["id"]}/download/"' in view  # the input dataset
    assert f'href="http://testserver/v2/algorithm-tasks/{ok}/output_log/"' in view
    assert f'/dags/{ALGORITHM_TASK}/runs/{ok_run}/tasks/{RUN_TASK}"' in view  # the Airflow task's log
    # the output dataset's download link answers
    assert client.get(f"/v2/datasets/{output}/download/", headers=auth("alice")).status_code == 200

    failed = get(client, f"/ui/algorithm-tasks/{bad}/", "alice").text
    assert "<tr><th>Exit code</th><td>3</td></tr>" in failed
    assert "the algorithm exited with code 3" in failed and "KeyError: &#x27;TIV&#x27;" in failed
    assert "Output dataset" not in failed

    queued = get(client, f"/ui/algorithm-tasks/{waiting}/", "alice").text
    assert 'id="no-log"' in queued and 'id="autorefresh"' in queued and "No files yet" in queued
    # the run starts: the page follows
    gateway.runs[(ALGORITHM_TASK, waiting_run)] = RunInfo("running")
    gateway.tis[(ALGORITHM_TASK, waiting_run)] = [TaskInstanceInfo(RUN_TASK, -1, "running", 1, start_date=T0)]
    assert 'badge run">RUNNING' in get(client, f"/ui/algorithm-tasks/{waiting}/", "alice").text


def test_a_long_log_shows_its_end_and_links_the_whole(client, gateway, settings, algorithm, dataset) -> None:
    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    lines = [f"row {i:06d} read" for i in range(10_000)]
    log = "\n".join(lines) + "\nTraceback: at the end\n"
    _write_run_outputs(settings, tid, conf["run_uuid"], 0, log, {})
    _end(gateway, run_id, "success")
    view = get(client, f"/ui/algorithm-tasks/{tid}/", "alice").text
    shown = view.split('<pre id="output-log">', 1)[1].split("</pre>", 1)[0]
    assert shown.endswith("Traceback: at the end\n") and len(shown) <= algorithm_pages.LOG_TAIL_BYTES
    assert shown.startswith("row ") and "row 000000 read" not in shown  # from a whole line, not the file's start
    assert f'<a href="http://testserver/v2/algorithm-tasks/{tid}/output_log/">the whole log</a>' in view
    assert f"of {len(log):,} bytes" in view


def test_a_log_gone_from_storage_is_explained(client, gateway, settings, algorithm, dataset) -> None:
    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    folder = _write_run_outputs(settings, tid, conf["run_uuid"], 0, "ok\n", {})
    _end(gateway, run_id, "success")
    assert '<pre id="output-log">ok\n</pre>' in get(client, f"/ui/algorithm-tasks/{tid}/", "alice").text
    Path(folder.removeprefix("file://"), "output.log").unlink()
    reply = get(client, f"/ui/algorithm-tasks/{tid}/", "alice")
    assert reply.status_code == 200 and 'id="log-unavailable"' in reply.text and "SUCCEEDED" in reply.text


def test_groups_auth_and_escaping(client, gateway, add_member, algorithm, dataset) -> None:
    add_member("alice", "team-a")
    tid = client.post("/v2/algorithm-tasks/", json={"name": "<img src=x onerror=alert(1)>", "algorithm":
                                                    algorithm["id"]}, headers=auth("alice")).json()["id"]
    mine = get(client, "/ui/algorithm-tasks/", "alice").text
    assert f'data-task="{tid}"' in mine and "<img src=x" not in mine and "&lt;img src=x onerror=alert(1)&gt;" in mine
    assert "<img src=x" not in get(client, f"/ui/algorithm-tasks/{tid}/", "alice").text
    # bob is not in team-a: not listed, and the page is a 404 page, as for an unknown id
    assert f'data-task="{tid}"' not in get(client, "/ui/algorithm-tasks/", "bob").text
    for pk in (tid, 999_999):
        reply = get(client, f"/ui/algorithm-tasks/{pk}/", "bob")
        assert reply.status_code == 404 and f"algorithm task {pk} not found" in reply.text
    assert f'data-task="{tid}"' in get(client, "/ui/algorithm-tasks/", "root").text  # admin
    reply = get(client, "/ui/algorithm-tasks/")
    assert reply.status_code == 401 and 'id="login"' in reply.text
    assert "No algorithm tasks yet" in get(client, "/ui/algorithm-tasks/", "carol").text
