"""Fixtures of the web UI tests: the API test app of tests/plugins (SQLite and PostgreSQL, fake gateway)
whose fake Airflow auth also reads the UI's ``_token`` cookie, and a completed analysis whose output
tarball holds the PiWind loc10 reference ORD files."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from perilflow.kernel.storage import put_tar
from perilflow.plugins.api.app import create_app
from perilflow.plugins.api.gateway import FakeGateway, RunInfo, TaskInstanceInfo
from perilflow.plugins.db import make_sessionmaker
from perilflow.plugins.db.models import Analysis
from perilflow.plugins.settings import ApiSettings
from tests.plugins import conftest as api_conftest
from tests.plugins.conftest import USERS, auth

# the API tests' fixtures, used here under the same names (this conftest overrides ``app`` and ``client``)
db_url, settings, gateway, add_member = api_conftest.db_url, api_conftest.settings, api_conftest.gateway, \
    api_conftest.add_member

ASSET = Path(__file__).resolve().parents[1] / "assets" / "piwind_ord_loc10"
#: Airflow's auth-manager cookie (airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN)
COOKIE = "_token"
DAG_ID = "perilflow_generate_and_run"
RUN_ID = "analysis-1-generate-and-run-0123abcd"


async def cookie_or_bearer_user(request: Request):
    """Like Airflow's get_user: the bearer token wins, else the ``_token`` cookie; the token is the user name."""
    header = request.headers.get("authorization", "")
    token = header.split(" ", 1)[1] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(401, "Not authenticated")
    user = USERS.get(token)
    if user is None:
        raise HTTPException(403, "Invalid JWT token")
    return user


def build_app(settings: ApiSettings, gateway: FakeGateway) -> FastAPI:
    """The app factory's app with the fake auth (cookie or bearer)."""
    from airflow.api_fastapi.core_api.security import get_user

    app = create_app(settings, gateway)
    app.dependency_overrides[get_user] = cookie_or_bearer_user
    return app


@pytest.fixture
def ui_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private results cache folder (PERILFLOW_UI_CACHE_DIR) and an empty in-memory cache."""
    from perilflow.plugins.ui import results

    folder = tmp_path / "ui-cache"
    monkeypatch.setenv("PERILFLOW_UI_CACHE_DIR", str(folder))
    monkeypatch.setattr(results, "_memory", type(results._memory)())
    return folder


@pytest.fixture
def app(settings: ApiSettings, gateway: FakeGateway, ui_cache: Path) -> Iterator[FastAPI]:
    from sqlalchemy import delete

    from perilflow.plugins.db.models import Base

    app = build_app(settings, gateway)
    yield app
    with app.state.perilflow_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    app.state.perilflow_engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def pack_outputs(target_uri: str, scratch: Path) -> str:
    """The engine's output tarball for the loc10 reference: ``output/<file>.csv`` (the assets are gzipped)."""
    folder = scratch / "outputs"
    (folder / "output").mkdir(parents=True)
    for path in sorted(ASSET.glob("*.csv.gz")):
        (folder / "output" / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    return put_tar(folder, target_uri)


@dataclass
class Completed:
    """A RUN_COMPLETED analysis of alice (group ``alpha``) and a NEW one of bob (group ``beta``)."""

    id: int
    other_id: int
    output_uri: str
    input_uri: str


def make_completed(client: TestClient, app: FastAPI, gateway: FakeGateway, settings: ApiSettings,
                   add_member, scratch: Path) -> Completed:
    """Create both analyses through the API, then record alice's run outcome as the listener would."""
    add_member("alice", "alpha")
    add_member("bob", "beta")
    ids = {}
    for user in ("alice", "bob"):
        model = client.post("/v2/models/", json={"supplier_id": "OasisLMF", "model_id": f"PiWind-{user}",
                                                 "version_id": "1"}, headers=auth(user)).json()
        portfolio = client.post("/v2/portfolios/", json={"name": f"loc10 of {user}"}, headers=auth(user)).json()
        reply = client.post("/v2/analyses/", json={"name": f"PiWind loc10 ({user})", "portfolio": portfolio["id"],
                                                   "model": model["id"]}, headers=auth(user))
        assert reply.status_code == 201, reply.text
        ids[user] = reply.json()["id"]

    base = settings.storage_url
    output_uri = pack_outputs(f"{base}/analysis-{ids['alice']}_losses-x/output.tar.gz", scratch)
    input_uri = f"{base}/analysis-{ids['alice']}_files-x/input.tar.gz"
    Path(input_uri.removeprefix("file://")).parent.mkdir(parents=True)
    Path(input_uri.removeprefix("file://")).write_bytes(b"inputs")
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with make_sessionmaker(app.state.perilflow_engine).begin() as session:
        a = session.get(Analysis, ids["alice"])
        a.status, a.dag_id, a.run_id = "RUN_COMPLETED", DAG_ID, RUN_ID
        a.output_file, a.input_file = output_uri, input_uri
        a.task_started, a.task_finished = start, start + timedelta(minutes=3)
        a.settings = {"gul_summaries": [{"id": 1, "oed_fields": []}], "il_summaries": [{"id": 1}],
                      "ri_summaries": [{"id": 1}]}
    gateway.runs[(DAG_ID, RUN_ID)] = RunInfo("success", start, start + timedelta(minutes=3))
    gateway.tis[(DAG_ID, RUN_ID)] = [
        TaskInstanceInfo("prepare-losses-generation-params", -1, "success", 1, start_date=start,
                         end_date=start + timedelta(seconds=4)),
        *(TaskInstanceInfo("generate-losses-chunk", i, "success", 1, start_date=start + timedelta(seconds=5),
                           end_date=start + timedelta(seconds=65)) for i in range(2)),
        TaskInstanceInfo("generate-losses-output", -1, "success", 2, start_date=start + timedelta(seconds=70),
                         end_date=start + timedelta(seconds=80)),
    ]
    return Completed(ids["alice"], ids["bob"], output_uri, input_uri)


@pytest.fixture
def completed(client, app, gateway, settings, add_member, tmp_path) -> Completed:
    return make_completed(client, app, gateway, settings, add_member, tmp_path)
