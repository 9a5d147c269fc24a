"""The web UI in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

uvicorn serves, on a free loopback port, what Airflow's api-server would: the app factory's app
mounted at /perilflow (fake gateway, SQLite product DB with a completed PiWind loc10 analysis
whose output tarball holds the reference ORD files), plus a stand-in for the auth manager's login
(a form that sets the ``_token`` cookie, as Airflow's login does) and for Airflow's plugin page
(``/plugin/perilflow``: an iframe on the external view's href). The browser logs in, opens the
page, sees the analysis, its EP chart drawn, downloads the output tarball, and a screenshot is
kept in tests/artifacts/ui-analysis.png.

In CI (CI=true) a missing chromium or playwright fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import html
import io
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from perilflow.plugins.db.migrate import migrate
from tests.conftest import free_port
from tests.ui.conftest import COOKIE, DAG_ID, RUN_ID

CHROMIUM = os.environ.get("PERILFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "perilflow-test"


def _require_browser() -> None:
    """Skip (or fail in CI) without playwright or Debian's chromium; never downloads a browser."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install -r requirements-dev.txt -c constraints.txt)"
    if problem is None and not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        problem = f"{CHROMIUM} not found: run `make chromium` (apt-get install -y chromium) or set PERILFLOW_CHROMIUM"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the web UI test must run in CI: {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """One SQLite product DB: the browser test needs no second database (the pages' queries run on both in
    test_ui_pages.py)."""
    url = f"sqlite:///{tmp_path / 'perilflow.db'}"
    migrate(url)
    return url


def api_server(app: FastAPI) -> FastAPI:
    """Airflow's api-server as the UI sees it: the plugin app at /perilflow, a login, the plugin page."""
    from perilflow.plugins.plugin import PerilflowPlugin

    root = FastAPI()
    view = PerilflowPlugin.external_views[0]

    @root.get("/auth/login", response_class=HTMLResponse)
    def login_form(next: str = Query("/")) -> str:  # noqa: A002 - the auth manager's parameter name
        return ("<!DOCTYPE html><html><body><h1>Sign in</h1><form method='post' action='/auth/login'>"
                f"<input type='hidden' name='next' value='{html.escape(next, quote=True)}'>"
                "<input name='username' placeholder='user'><input name='password' type='password'>"
                "<button type='submit'>Sign in</button></form></body></html>")

    @root.post("/auth/login")
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              next: str = Form("/")):  # noqa: A002
        if password != PASSWORD:
            return HTMLResponse("<h1>Wrong password</h1>", status_code=401)
        same_site = next.startswith("/") or next.startswith(str(request.base_url))  # as Airflow's is_safe_url
        target = next if same_site else "/"
        reply = RedirectResponse(target, status_code=303)
        reply.set_cookie(COOKIE, username, path="/", httponly=True, samesite="lax")
        return reply

    @root.get(f"/plugin/{view['url_route']}", response_class=HTMLResponse)
    def plugin_page() -> str:
        return (f"<!DOCTYPE html><html><body style='margin:0'><nav>Airflow · {html.escape(view['name'])}</nav>"
                f"<iframe id='plugin' src='{view['href']}' style='width:100%;height:90vh;border:0'></iframe>"
                "</body></html>")

    root.mount("/perilflow", app)
    return root


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """uvicorn on a free 127.0.0.1 port, in a thread of this process; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_server(app), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-ui-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start for the UI test")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_log_in_open_the_page_see_the_plot_download(live_server: str, completed) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    base = live_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
            page = context.new_page()
            # not logged in: a 401 page pointing at Airflow's login
            reply = page.goto(f"{base}/perilflow/ui/")
            assert reply is not None and reply.status == 401
            expect(page.locator("h1")).to_have_text("Log in to see Perilflow")
            page.click("#login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/perilflow/ui/")
            # the list: alice's analysis with its status and progress, not bob's
            row = page.locator(f'tr[data-analysis="{completed.id}"]')
            expect(row).to_contain_text("RUN_COMPLETED")
            expect(row.locator(".progress-text")).to_have_text("4/4")
            expect(page.locator(f'tr[data-analysis="{completed.other_id}"]')).to_have_count(0)
            # inside Airflow's plugin page (iframe on the external view's href) the cookie carries the login
            page.goto(f"{base}/plugin/perilflow")
            frame = page.frame_locator("#plugin")
            expect(frame.locator(f'tr[data-analysis="{completed.id}"]')).to_contain_text("RUN_COMPLETED")
            # the analysis page
            page.goto(f"{base}/perilflow/ui/")
            row.get_by_role("link", name="PiWind loc10 (alice)").click()
            page.wait_for_url(f"{base}/perilflow/ui/analyses/{completed.id}/")
            curves = page.locator("#results svg path.curve")
            expect(curves).to_have_count(6)
            for curve in curves.all():  # drawn: every curve has a visible extent
                box = curve.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 20
            expect(page.locator("table.results").first).to_contain_text("OEP 100y")
            log = page.locator('tr[data-slug="generate-losses-chunk-1"] a.log')
            expect(log).to_have_attribute("href", f"/dags/{DAG_ID}/runs/{RUN_ID}/tasks/generate-losses-chunk/mapped/1")
            # a download through the API's own route, with the same cookie
            with page.expect_download() as info:
                page.click('a[data-file="output_file"]')
            download = info.value
            assert download.suggested_filename == f"analysis-{completed.id}-outputs.tar.gz"
            data = Path(download.path()).read_bytes()
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                assert "output/gul_S1_ept.csv" in archive.getnames()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-analysis.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "ui-analysis.png").stat().st_size > 10_000
