"""The web UI on a real Airflow 3.3 api-server (integration tier): the plugin's nav entry, Airflow's own
auth (its ``_token`` cookie, its login URL), and in Chromium Airflow's real login form and its plugin page
showing ours in an iframe.

The platform is the integration harness's (api-server, scheduler, dag-processor on PostgreSQL) with a
migrated throwaway product DB. Skipped, or failed in CI, as the integration tier and the Chromium test are.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.integration.conftest import require_services
from tests.integration.harness import PASSWORD, PG, USER, AirflowPlatform, pg_execute
from tests.ui.test_ui_chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _require_browser

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("airflow")]


@pytest.fixture(scope="module")
def platform() -> Iterator[AirflowPlatform]:
    require_services()
    from perilflow.plugins.db.migrate import migrate

    name = f"perilflow_ui_{secrets.token_hex(4)}"
    pg_execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    try:
        migrate(url)
        with AirflowPlatform(executor="LocalExecutor", parallelism=2, name="ui",
                             env={"PERILFLOW_DATABASE_URL": url}) as started:
            yield started
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def analysis_id(platform: AirflowPlatform) -> int:
    """A NEW analysis created over the API with a bearer token."""
    model = platform.request("POST", "/perilflow/v2/models/", json={"supplier_id": "Demo", "model_id": "UI",
                                                                    "version_id": "1"}).json()
    portfolio = platform.request("POST", "/perilflow/v2/portfolios/", json={"name": "ui portfolio"}).json()
    reply = platform.request("POST", "/perilflow/v2/analyses/", json={"name": "live UI analysis",
                                                                      "portfolio": portfolio["id"],
                                                                      "model": model["id"]})
    return reply.json()["id"]


def test_nav_entry_cookie_auth_and_login_url(platform: AirflowPlatform, analysis_id: int) -> None:
    plugins = platform.request("GET", "/api/v2/plugins").json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "perilflow"]
    assert ours["external_views"] == [{"name": "Perilflow", "href": "/perilflow/ui/", "destination": "nav",
                                       "url_route": "perilflow", "icon": "/perilflow/ui/icon.svg",
                                       "nav_top_level": True, "icon_dark_mode": None, "category": None}]
    client = platform.client
    # no cookie: the page links to the auth manager's own login page, coming back here
    client.cookies.clear()
    reply = client.get("/perilflow/ui/")
    assert reply.status_code == 401 and 'id="login"' in reply.text
    login = reply.text.split('id="login" href="', 1)[1].split('"', 1)[0]
    assert unquote(login.replace("&amp;", "&")) == f"/auth/login?next={platform.url}/perilflow/ui/"
    assert client.get("/perilflow/ui/icon.svg").status_code == 200
    # Airflow's JWT as the UI's cookie: Airflow's GetUserDep accepts it
    client.cookies.set("_token", platform.token())
    try:
        page = client.get("/perilflow/ui/")
        assert page.status_code == 200 and f'data-analysis="{analysis_id}"' in page.text
        detail = client.get(f"/perilflow/ui/analyses/{analysis_id}/")
        assert detail.status_code == 200 and "No sub-tasks" in detail.text
        client.cookies.set("_token", "not-a-jwt")
        assert client.get("/perilflow/ui/").status_code == 403
    finally:
        client.cookies.clear()


def test_airflow_login_then_nav_iframe_in_chromium(platform: AirflowPlatform, analysis_id: int) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{platform.url}/perilflow/ui/")
            page.click("#login")
            # Airflow's simple auth manager login page
            page.locator("input[name=username]").fill(USER)
            page.locator("input[name=password]").fill(PASSWORD)
            page.locator("button[type=submit]").click()
            page.wait_for_url(f"{platform.url}/perilflow/ui/", timeout=30_000)
            expect(page.locator(f'tr[data-analysis="{analysis_id}"]')).to_contain_text("live UI analysis")
            # Airflow's nav item: its plugin page frames ours
            page.goto(f"{platform.url}/plugin/perilflow")
            frame = page.frame_locator("iframe")
            expect(frame.locator(f'tr[data-analysis="{analysis_id}"]')).to_contain_text("NEW", timeout=30_000)
            expect(page.get_by_role("link", name="Perilflow").first).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-airflow-nav.png"))
        finally:
            browser.close()
    assert Path(ARTIFACTS / "ui-airflow-nav.png").stat().st_size > 10_000
