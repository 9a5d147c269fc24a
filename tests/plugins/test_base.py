"""Unversioned routes, OpenAPI, plugin registration."""

from __future__ import annotations

import configparser

from tests.conftest import REPO_ROOT
from tests.plugins.conftest import auth


def test_healthcheck_needs_no_token(client) -> None:
    assert client.get("/healthcheck/").json() == {"status": "OK"}


def test_server_info_names_auth_type(client) -> None:
    info = client.get("/server_info/").json()
    assert info["config"]["API_AUTH_TYPE"] == "simple"
    assert info["config"]["DEFAULT_DB"]["ENGINE"] in ("sqlite", "postgresql")


def test_oed_peril_codes(client) -> None:
    assert client.get("/oed_peril_codes/").status_code == 401
    assert client.get("/oed_peril_codes/", headers={"Authorization": "Bearer nobody"}).status_code == 403
    body = client.get("/oed_peril_codes/", headers=auth("alice")).json()
    assert body["peril_codes"]["WTC"]["desc"]
    assert "WTC" in body["peril_groups"]["WW1"]["peril_ids"]


def test_openapi_and_docs(client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v2/analyses/{analysis_pk}/generate_and_run/" in schema["paths"]
    assert "/v2/portfolios/{portfolio_pk}/location_file/" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_access_token_reports_bad_gateway_when_airflow_is_down(client) -> None:
    reply = client.post("/access_token/", json={"username": "a", "password": "b"})
    assert reply.status_code == 502
    assert client.post("/access_token/", json={"username": "a"}).status_code == 422


def test_plugin_mounts_app_at_perilflow_and_is_registered() -> None:
    from perilflow.plugins.plugin import URL_PREFIX, PerilflowPlugin

    assert URL_PREFIX == "/perilflow"
    assert PerilflowPlugin.name == "perilflow"
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    assert "perilflow = perilflow.plugins.plugin:PerilflowPlugin" in cfg["options.entry_points"]["airflow.plugins"]


def test_mounted_under_perilflow(app) -> None:
    """As the api-server mounts it: paths and the URLs in replies carry the /perilflow prefix."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    root = FastAPI()
    root.mount("/perilflow", app)
    client = TestClient(root)
    assert client.get("/perilflow/healthcheck/").json() == {"status": "OK"}
    model = client.post("/perilflow/v2/models/", json={"supplier_id": "s", "model_id": "m", "version_id": "1"},
                        headers=auth("alice")).json()
    assert model["settings"] == f"http://testserver/perilflow/v2/models/{model['id']}/settings/"
    assert client.get("/perilflow/docs").status_code == 200
    assert client.get("/perilflow/v2/models/").status_code == 401


def test_airflow_loads_the_plugin_from_the_entry_point(tmp_path) -> None:
    """Airflow's plugins manager finds the installed plugin and its app at /perilflow."""
    import os
    import subprocess
    import sys

    code = ("from airflow import plugins_manager as pm; apps, _ = pm.get_fastapi_plugins(); "
            "print([(a['url_prefix'], a['name']) for a in apps])")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "PERILFLOW_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "('/perilflow', 'Perilflow API')" in out.stdout


def test_the_plugin_builds_the_app_at_its_first_request_only(app) -> None:
    """Loading the plugin (every Airflow component does) builds nothing; the first request builds the app
    once; a failed build is a 503 and is tried again."""
    import subprocess
    import sys

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from perilflow.plugins.plugin import LazyApp

    code = ("import sys; from perilflow.plugins.plugin import PerilflowPlugin as P; "
            "print(type(P.fastapi_apps[0]['app']).__name__, 'perilflow.plugins.api.app' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["LazyApp", "False"], out.stderr[-2000:]

    builds = []
    broken = [True]

    def factory():
        builds.append(1)
        if broken[0]:
            raise RuntimeError("no database")
        return app

    root = FastAPI()
    root.mount("/perilflow", LazyApp(factory))
    client = TestClient(root)
    reply = client.get("/perilflow/healthcheck/")
    assert reply.status_code == 503 and "could not be built" in reply.json()["detail"]
    broken[0] = False
    assert client.get("/perilflow/healthcheck/").json() == {"status": "OK"}
    assert client.get("/perilflow/healthcheck/").json() == {"status": "OK"}
    assert len(builds) == 2  # the failed try and the one that worked; not one per request
