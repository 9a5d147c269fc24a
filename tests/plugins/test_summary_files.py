"""lookup_validation_file/ and summary_levels_file/ (exposure_summary_report.json, _levels.json), and the
event counts num_events_total / num_events_complete, through the API on the fake gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perilflow.kernel.inputs.exposure_summary import write_exposure_summaries
from perilflow.kernel.lookup import run_lookup
from perilflow.kernel.mdk import load_mdk_config
from perilflow.kernel.oed import load_exposure
from perilflow.operators.config import PlatformConfig
from perilflow.operators.plan import input_generation_plan
from perilflow.operators.runconf import parse_conf
from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from tests.conftest import require_shared
from tests.plugins.conftest import auth

RUNTIME = {"model_data_dir": "PiWind/model_data", "lookup_config_json": "PiWind/keys_data/lookup_config.json",
           "lookup_data_dir": "PiWind/keys_data", "model_settings_json": "PiWind/model_settings.json"}
ROUTES = {"lookup_validation_file": "exposure_summary_report.json",
          "summary_levels_file": "exposure_summary_levels.json"}


@pytest.fixture
def piwind() -> Path:
    return require_shared("piwind")


@pytest.fixture
def analysis(client, piwind: Path) -> int:
    """An analysis of alice's on a PiWind model and the loc10 portfolio."""
    model = client.post("/v2/models/", json={"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1",
                                             "runtime": RUNTIME}, headers=auth("alice")).json()
    portfolio = client.post("/v2/portfolios/", json={"name": "loc10"}, headers=auth("alice")).json()
    for kind, name in (("location_file", "SourceLocOEDPiWind10.csv"), ("accounts_file", "SourceAccOEDPiWind.csv")):
        data = (piwind / "exposure_data" / name).read_bytes()
        assert client.post(f"/v2/portfolios/{portfolio['id']}/{kind}/", files={"file": (name, data)},
                           headers=auth("alice")).status_code == 200
    reply = client.post("/v2/analyses/", json={"name": "a1", "portfolio": portfolio["id"], "model": model["id"]},
                        headers=auth("alice"))
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def _generate_inputs(client, gateway, settings, monkeypatch, piwind: Path, aid: int, write: bool = True) -> dict:
    """generate_inputs/, then the run succeeds with the record its real plan gives; the files written by the
    kernel where the plan puts them (``write``=False: an older worker that did not write them)."""
    assert client.post(f"/v2/analyses/{aid}/generate_inputs/", headers=auth("alice")).status_code == 200
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", settings.storage_url)
    record = input_generation_plan(parse_conf(conf, "inputs"), PlatformConfig.from_env(), conf["run_uuid"],
                                   10)["record"]
    folder = Path(record["folder"].removeprefix("file://"))
    folder.mkdir(parents=True)
    (folder / "input.tar.gz").write_bytes(b"tarball")
    if write:
        config = load_mdk_config(piwind / "oasislmf_loc10.json")
        exposure = load_exposure(config.location, config.account)
        keys, errors = run_lookup(config.lookup_config_json, exposure.location, config.lookup_data_dir)
        write_exposure_summaries(folder, exposure.location, keys, errors, exposure.account)
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    gateway.xcoms[(dag_id, run_id, "record-input-files")] = record
    return record


def test_both_files_are_served_once_input_generation_wrote_them(client, gateway, settings, monkeypatch, piwind,
                                                                 analysis) -> None:
    aid = analysis
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["lookup_validation_file"] is None and body["summary_levels_file"] is None
    for name in ROUTES:  # nothing generated yet
        reply = client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("alice"))
        assert reply.status_code == 404 and reply.json()["detail"] == f"no {name.replace('_', ' ')} for this object"
    record = _generate_inputs(client, gateway, settings, monkeypatch, piwind, aid)
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "READY"
    folder = Path(record["folder"].removeprefix("file://"))
    for name, filename in ROUTES.items():
        assert record[name] == f"{record['folder']}/{filename}"
        assert body[name].endswith(f"/v2/analyses/{aid}/{name}/")
        reply = client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("alice"))
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        assert f'filename="analysis-{aid}-{filename}"' in reply.headers["content-disposition"]
        assert reply.json() == json.loads((folder / filename).read_text())
    report = client.get(f"/v2/analyses/{aid}/lookup_validation_file/", headers=auth("alice")).json()
    assert report["total"]["portfolio"]["number_of_locations"] == 10 and set(report) == {"total", "WSS", "WTC"}
    levels = client.get(f"/v2/analyses/{aid}/summary_levels_file/", headers=auth("alice")).json()
    assert set(levels) == {"GUL", "IL"} and "LocNumber" in levels["GUL"]["available"]
    links = client.get(f"/v2/analyses/{aid}/storage_links/", headers=auth("alice")).json()
    assert links["lookup_validation_file"] == f"{folder.name}/exposure_summary_report.json"
    assert links["summary_levels_file"] == f"{folder.name}/exposure_summary_levels.json"
    listed = client.get("/v2/analyses/", headers=auth("alice")).json()
    assert listed[0]["summary_levels_file"] == body["summary_levels_file"]
    # no token: 401; the file gone from storage: 404 saying so
    assert client.get(f"/v2/analyses/{aid}/summary_levels_file/").status_code == 401
    (folder / "exposure_summary_levels.json").unlink()
    reply = client.get(f"/v2/analyses/{aid}/summary_levels_file/", headers=auth("alice"))
    assert reply.status_code == 404 and "no longer in storage" in reply.json()["detail"]
    # a new input generation forgets the old files until it has its own
    assert client.post(f"/v2/analyses/{aid}/generate_inputs/", headers=auth("alice")).status_code == 200
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["lookup_validation_file"] is None and body["summary_levels_file"] is None


def test_another_groups_analysis_is_404(client, gateway, settings, monkeypatch, piwind, analysis,
                                        add_member) -> None:
    aid = analysis
    _generate_inputs(client, gateway, settings, monkeypatch, piwind, aid)
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    portfolio = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["portfolio"]
    assert client.patch(f"/v2/portfolios/{portfolio}/", json={"groups": ["team-a"]},
                        headers=auth("alice")).status_code == 200
    for name in ROUTES:
        assert client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("alice")).status_code == 200
        reply = client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("bob"))
        assert reply.status_code == 404 and reply.json()["detail"] == f"analysis {aid} not found"
        assert client.get(f"/v2/analyses/999999/{name}/", headers=auth("alice")).status_code == 404


def test_an_input_generation_without_the_files_leaves_them_null(client, gateway, settings, monkeypatch, piwind,
                                                                analysis) -> None:
    aid = analysis
    _generate_inputs(client, gateway, settings, monkeypatch, piwind, aid, write=False)
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "READY" and body["input_file"] is not None
    assert body["lookup_validation_file"] is None and body["summary_levels_file"] is None
    for name in ROUTES:
        assert client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("alice")).status_code == 404


def test_event_counts_follow_the_finished_chunks(client, gateway, settings, monkeypatch, piwind, analysis) -> None:
    aid = analysis
    _generate_inputs(client, gateway, settings, monkeypatch, piwind, aid)
    analysis_settings = json.loads((piwind / "analysis_settings" / "ord_all_outputs_s10.json").read_text())
    client.post(f"/v2/analyses/{aid}/settings/", json=analysis_settings, headers=auth("alice"))
    assert client.post(f"/v2/analyses/{aid}/run/", headers=auth("alice")).status_code == 200
    dag_id, run_id, _, _ = gateway.triggered[-1]
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    plan = "prepare-losses-generation-params"
    gateway.xcom_values[(dag_id, run_id, plan, "n_loss_chunks")] = 3
    gateway.xcom_values[(dag_id, run_id, plan, "n_events")] = 1000

    def chunks(*states: str | None) -> None:
        gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo(plan, -1, "success", 1)] + [
            TaskInstanceInfo("generate-losses-chunk", i, state, 1) for i, state in enumerate(states)]

    def counts() -> tuple[int | None, int | None]:
        body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
        assert body["status"] == "RUN_STARTED"
        return body["num_events_total"], body["num_events_complete"]

    chunks("running", "running", "running")
    assert counts() == (1000, 0)
    chunks("success", "running", None)  # chunk 0 holds 334 events (1000 = 334 + 333 + 333)
    assert counts() == (1000, 334)
    chunks("success", "running", "success")
    assert counts() == (1000, 667)
    listed = client.get("/v2/analyses/", headers=auth("alice")).json()
    assert listed[0]["num_events_total"] == 1000 and listed[0]["num_events_complete"] is None  # no sub-tasks there
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_COMPLETED" and body["num_events_complete"] == 1000
