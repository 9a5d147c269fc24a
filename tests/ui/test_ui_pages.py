"""The web UI's pages through TestClient: list, analysis view, report, auth and groups, the nav entry."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.db import make_sessionmaker
from perilflow.plugins.db.models import Analysis
from perilflow.plugins.ui import results
from tests.plugins.conftest import auth
from tests.ui.conftest import ASSET, COOKIE, DAG_ID, RUN_ID

SVG = "{http://www.w3.org/2000/svg}"
LOSSES = "perilflow_losses_generation"


def get(client, url: str, user: str | None = None):
    """GET ``url`` as the browser inside Airflow's UI does: with the ``_token`` cookie of ``user`` (or none)."""
    client.cookies.clear()
    if user:
        client.cookies.set(COOKIE, user)
    return client.get(url)


def _svg(page: str) -> ET.Element:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def test_list_shows_visible_analyses_with_progress(client, completed) -> None:
    reply = get(client, "/ui/", "alice")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    assert f'data-analysis="{completed.id}"' in page and "PiWind loc10 (alice)" in page
    assert f'data-analysis="{completed.other_id}"' not in page  # bob's group
    assert "RUN_COMPLETED" in page and '<progress value="4" max="4"></progress>' in page
    assert f'href="/ui/analyses/{completed.id}/"' in page
    assert "autorefresh" not in page  # nothing active: no reload script
    # the bearer header works as well (API clients), and an admin sees both
    admin = client.get("/ui/", headers=auth("root")).text
    assert f'data-analysis="{completed.id}"' in admin and f'data-analysis="{completed.other_id}"' in admin


def test_active_analysis_progress_and_refresh(client, gateway, completed, app) -> None:
    with make_sessionmaker(app.state.perilflow_engine).begin() as session:
        session.get(Analysis, completed.other_id).status = "RUN_QUEUED"
        a = session.get(Analysis, completed.other_id)
        a.dag_id, a.run_id = LOSSES, "analysis-2-run"
    now = datetime.now(UTC)
    gateway.runs[(LOSSES, "analysis-2-run")] = RunInfo("running", now)
    gateway.tis[(LOSSES, "analysis-2-run")] = [
        TaskInstanceInfo("prepare-losses-generation-params", -1, "success", 1, start_date=now),
        TaskInstanceInfo("generate-losses-chunk", 0, "running", 1, start_date=now),
        TaskInstanceInfo("generate-losses-chunk", 1, None, 0)]
    page = get(client, "/ui/", "bob").text
    assert "RUN_STARTED" in page  # synced from the DAG run, as the API does
    assert '<progress value="1" max="3"></progress>' in page and 'id="autorefresh"' in page
    detail = get(client, f"/ui/analyses/{completed.other_id}/", "bob").text
    assert "No results yet" in detail and 'id="autorefresh"' in detail


def test_analysis_page_subtasks_results_and_downloads(client, completed) -> None:
    reply = get(client, f"/ui/analyses/{completed.id}/", "alice")
    assert reply.status_code == 200, reply.text
    page = reply.text
    # sub-tasks link to Airflow 3's task instance pages (mapped ones with /mapped/<index>)
    base = f"/dags/{DAG_ID}/runs/{RUN_ID}/tasks"
    assert f'href="{base}/prepare-losses-generation-params"' in page
    assert f'href="{base}/generate-losses-chunk/mapped/1"' in page
    assert page.count('class="log"') == 4 and 'data-slug="generate-losses-chunk-0"' in page
    # downloads are the API's own routes
    assert f'href="http://testserver/v2/analyses/{completed.id}/output_file/"' in page
    assert f'href="http://testserver/v2/analyses/{completed.id}/input_file/"' in page
    assert 'data-file="run_traceback_file"' not in page
    # results: AAL table values and the EP chart with its six curves
    palt = pd.read_csv(ASSET / "gul_S1_palt.csv.gz")
    gul_aal = palt.loc[palt.SampleType == 2, "MeanLoss"].sum()
    assert f"{gul_aal:,.0f}" in page
    svg = _svg(page)
    assert len(svg.findall(f".//{SVG}path")) == 6
    got = get(client, f"/v2/analyses/{completed.id}/output_file/", "alice")
    assert got.status_code == 200 and got.content[:2] == b"\x1f\x8b"


def test_results_are_cached_per_output_uri(client, completed, ui_cache) -> None:
    get(client, f"/ui/analyses/{completed.id}/", "alice")
    folders = list(ui_cache.iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    # only what the report reads is extracted (no MELT / PSEPT), flat
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(
        f"{p}_S1_{t}.csv" for p in ("gul", "il", "ri") for t in ("ept", "palt"))
    # the tarball is not read again (page still renders with the tarball gone)
    results._memory.clear()
    Path(completed.output_uri.removeprefix("file://")).unlink()
    page = get(client, f"/ui/analyses/{completed.id}/", "alice").text
    assert page.count('<path class="curve"') == 6


def test_missing_or_bad_output_file_is_explained(client, completed, app) -> None:
    with make_sessionmaker(app.state.perilflow_engine).begin() as session:
        session.get(Analysis, completed.id).output_file = completed.output_uri + ".gone"
    page = get(client, f"/ui/analyses/{completed.id}/", "alice").text
    assert 'id="results-unavailable"' in page and "no longer in storage" in page
    reply = get(client, f"/ui/analyses/{completed.id}/report.html", "alice")
    assert reply.status_code == 404 and "no longer in storage" in reply.text


def test_broken_or_oversized_output_tarballs_are_explained(client, completed, app, tmp_path, monkeypatch) -> None:
    import io
    import tarfile as tarmod

    good = Path(completed.output_uri.removeprefix("file://")).read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    big = tmp_path / "big.tar.gz"
    with tarmod.open(big, "w:gz") as archive:
        data = b"SummaryId,SampleType,MeanLoss\n" + b"1,1,0\n" * 2000
        info = tarmod.TarInfo("output/gul_S1_palt.csv")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(results, "MAX_REPORT_FILE_BYTES", 1000)
    for archive_path, message in ((truncated, "not a readable tar archive"), (big, "more than a results file")):
        results._memory.clear()
        with make_sessionmaker(app.state.perilflow_engine).begin() as session:
            session.get(Analysis, completed.id).output_file = f"file://{archive_path}"
        page = get(client, f"/ui/analyses/{completed.id}/", "alice")
        assert page.status_code == 200 and 'id="results-unavailable"' in page.text and message in page.text


def test_report_download(client, completed) -> None:
    reply = get(client, f"/ui/analyses/{completed.id}/report.html", "alice")
    assert reply.status_code == 200
    assert reply.headers["content-disposition"] == f'attachment; filename="analysis-{completed.id}-report.html"'
    assert reply.text.startswith("<!DOCTYPE html>") and "<script" not in reply.text
    assert len(_svg(reply.text).findall(f".//{SVG}path")) == 6


def test_auth_and_groups(client, completed) -> None:
    # no token: 401 page linking to Airflow's login, coming back here
    reply = get(client, "/ui/")
    assert reply.status_code == 401 and reply.headers["content-type"].startswith("text/html")
    assert 'id="login" href="/auth/login?next=http%3A%2F%2Ftestserver%2Fui%2F"' in reply.text
    reply = get(client, f"/ui/analyses/{completed.id}/", "mallory")
    assert reply.status_code == 403 and "Invalid JWT token" in reply.text and 'id="login"' in reply.text
    # another group's analysis does not exist for bob; unknown ids neither
    for aid in (completed.id, 999_999):
        reply = get(client, f"/ui/analyses/{aid}/", "bob")
        assert reply.status_code == 404 and f"analysis {aid} not found" in reply.text
    assert get(client, f"/ui/analyses/{completed.id}/report.html", "bob").status_code == 404
    # the API itself still answers errors as JSON
    assert get(client, "/v2/analyses/").json() == {"detail": "Not authenticated"}
    # the nav icon is public (Airflow's UI loads it as an image)
    icon = get(client, "/ui/icon.svg")
    assert icon.status_code == 200 and ET.fromstring(icon.text).tag == f"{SVG}svg"


def test_pages_escape_names(client, completed, app) -> None:
    with make_sessionmaker(app.state.perilflow_engine).begin() as session:
        session.get(Analysis, completed.id).name = "<script>alert(1)</script>"
    for url in ("/ui/", f"/ui/analyses/{completed.id}/"):
        page = get(client, url, "alice").text
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_plugin_puts_the_page_in_airflows_nav() -> None:
    from perilflow.plugins.plugin import PerilflowPlugin

    (view,) = PerilflowPlugin.external_views
    assert view == {"name": "Perilflow", "href": "/perilflow/ui/", "destination": "nav", "url_route": "perilflow",
                    "icon": "/perilflow/ui/icon.svg", "nav_top_level": True}


@pytest.mark.parametrize("root", ["/perilflow", "/airflow/perilflow"])
def test_links_under_a_mount_prefix(completed, app, root) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(app, root_path=root)
    page = get(client, f"{root}/ui/analyses/{completed.id}/", "alice").text
    airflow = root.removesuffix("/perilflow")
    assert f'href="{airflow}/dags/{DAG_ID}/runs/{RUN_ID}/tasks/generate-losses-chunk/mapped/0"' in page
    assert f'href="{root}/ui/"' in page
    reply = get(client, f"{root}/ui/")
    assert reply.status_code == 401 and f'href="{airflow}/auth/login?next=' in reply.text
