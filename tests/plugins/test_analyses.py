"""/v2/analyses/: CRUD, settings, actions through the (fake) workflow gateway, status, sub-tasks, files."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.api.status import ALLOWED_FROM, AnalysisStatus, check_transition, sub_task_status
from tests.conftest import require_shared
from tests.plugins.conftest import auth

INPUTS, LOSSES, BOTH = "perilflow_input_generation", "perilflow_losses_generation", "perilflow_generate_and_run"
RUNTIME = {"model_data_dir": "PiWind/model_data", "lookup_config_json": "PiWind/keys_data/lookup_config.json",
           "lookup_data_dir": "PiWind/keys_data", "model_settings_json": "PiWind/model_settings.json"}


@pytest.fixture
def piwind() -> Path:
    return require_shared("piwind")


@pytest.fixture
def analysis_settings(piwind: Path) -> dict:
    return json.loads((piwind / "analysis_settings" / "ord_all_outputs_s10.json").read_text())


@pytest.fixture
def setup(client, piwind: Path):
    """A model and a portfolio with location and account files, created by alice."""
    model = client.post("/v2/models/", json={"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1",
                                             "runtime": RUNTIME}, headers=auth("alice")).json()
    portfolio = client.post("/v2/portfolios/", json={"name": "loc10"}, headers=auth("alice")).json()
    for kind, name in (("location_file", "SourceLocOEDPiWind10.csv"), ("accounts_file", "SourceAccOEDPiWind.csv")):
        data = (piwind / "exposure_data" / name).read_bytes()
        assert client.post(f"/v2/portfolios/{portfolio['id']}/{kind}/", files={"file": (name, data)},
                           headers=auth("alice")).status_code == 200
    return model, portfolio


def _analysis(client, setup, user: str = "alice", **extra) -> dict:
    model, portfolio = setup
    reply = client.post("/v2/analyses/", json={"name": "a1", "portfolio": portfolio["id"], "model": model["id"],
                                               **extra}, headers=auth(user))
    assert reply.status_code == 201, reply.text
    return reply.json()


def _post(client, aid: int, action: str, user: str = "alice"):
    return client.post(f"/v2/analyses/{aid}/{action}/", headers=auth(user))


def test_state_machine_table() -> None:
    assert check_transition("run", "NEW").startswith("analysis status is NEW; run is allowed only from")
    assert check_transition("generate_inputs", "RUN_ERROR") is None
    assert ALLOWED_FROM["cancel"] == {AnalysisStatus.INPUTS_GENERATION_QUEUED, AnalysisStatus.INPUTS_GENERATION_STARTED,
                                      AnalysisStatus.RUN_QUEUED, AnalysisStatus.RUN_STARTED}
    assert len(AnalysisStatus) == 12
    assert [sub_task_status(s) for s in (None, "scheduled", "up_for_retry", "running", "success", "failed",
                                         "upstream_failed")] == [
        "PENDING", "PENDING", "QUEUED", "STARTED", "COMPLETED", "ERROR", "CANCELLED"]


def test_crud(client, setup, analysis_settings) -> None:
    a = _analysis(client, setup, settings=analysis_settings)
    assert a["status"] == "NEW" and a["priority"] == 4 and a["settings"].endswith(f"/v2/analyses/{a['id']}/settings/")
    assert a["status_count"]["TOTAL"] == 0 and a["input_file"] is None
    assert [x["id"] for x in client.get("/v2/analyses/?status=NEW", headers=auth("alice")).json()] == [a["id"]]
    assert client.get("/v2/analyses/?status__in=READY,RUN_ERROR", headers=auth("alice")).json() == []
    assert client.patch(f"/v2/analyses/{a['id']}/", json={"name": "b"}, headers=auth("alice")).json()["name"] == "b"
    copy = client.post(f"/v2/analyses/{a['id']}/copy/", headers=auth("alice"))
    assert copy.status_code == 201 and copy.json()["name"] == "b - Copy" and copy.json()["status"] == "NEW"
    assert client.get(f"/v2/analyses/{copy.json()['id']}/settings/", headers=auth("alice")).json() == analysis_settings
    assert client.delete(f"/v2/analyses/{a['id']}/", headers=auth("alice")).status_code == 204
    assert client.get(f"/v2/analyses/{a['id']}/", headers=auth("alice")).status_code == 404


def test_bad_bodies(client, setup) -> None:
    model, portfolio = setup
    bad = client.post("/v2/analyses/", json={"name": "x", "portfolio": portfolio["id"]}, headers=auth("alice"))
    assert bad.status_code == 422 and "model" in bad.json()
    bad = client.post("/v2/analyses/", json={"name": "x", "portfolio": portfolio["id"], "model": 999},
                      headers=auth("alice"))
    assert bad.status_code == 400 and bad.json()["model"]
    bad = client.post("/v2/analyses/", json={"name": "x", "portfolio": portfolio["id"], "model": model["id"],
                                             "priority": 11}, headers=auth("alice"))
    assert bad.status_code == 422
    admin_only = client.post("/v2/analyses/", json={"name": "x", "portfolio": portfolio["id"], "model": model["id"],
                                                    "priority": 9}, headers=auth("alice"))
    assert admin_only.status_code == 400 and "reserved for admins" in admin_only.json()["priority"][0]
    assert client.post("/v2/analyses/", json={"name": "x", "portfolio": portfolio["id"], "model": model["id"],
                                              "priority": 9}, headers=auth("root")).status_code == 201


def test_settings_validated(client, setup, analysis_settings) -> None:
    a = _analysis(client, setup)
    url = f"/v2/analyses/{a['id']}/settings/"
    assert client.get(url, headers=auth("alice")).status_code == 404
    assert client.post(url, json=analysis_settings, headers=auth("alice")).status_code == 200
    assert client.get(url, headers=auth("alice")).json() == analysis_settings
    missing = {k: v for k, v in analysis_settings.items() if k != "model_settings"}
    reply = client.post(url, json=missing, headers=auth("alice"))
    assert reply.status_code == 400 and any("model_settings" in " ".join(v) for v in reply.json().values())
    reply = client.post(url, json={**analysis_settings, "number_of_samples": "ten"}, headers=auth("alice"))
    assert reply.status_code == 400 and any("number_of_samples" in k for k in reply.json())
    assert client.post(url, content=b"not json", headers={**auth("alice"), "Content-Type": "application/json"}
                       ).status_code == 422
    assert client.post(url, json=analysis_settings).status_code == 401
    assert client.delete(url, headers=auth("alice")).status_code == 204


def test_generate_inputs_then_run(client, gateway, setup, analysis_settings, settings) -> None:
    a = _analysis(client, setup)
    aid = a["id"]
    # run before inputs: forbidden transition
    reply = _post(client, aid, "run")
    assert reply.status_code == 409 and "run is allowed only from" in reply.json()["detail"]
    reply = _post(client, aid, "generate_inputs")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "INPUTS_GENERATION_QUEUED"
    dag_id, run_id, conf, user = gateway.triggered[-1]
    assert dag_id == INPUTS and user == "alice" and run_id.startswith(f"analysis-{aid}-generate-inputs-")
    assert conf["analysis_id"] == aid and conf["model"]["id"] == "OasisLMF/PiWind/1"
    assert conf["model"]["lookup_config_json"] == RUNTIME["lookup_config_json"]
    assert set(conf["portfolio"]) == {"location", "account"} and conf["portfolio"]["location"].startswith("file://")
    from perilflow.operators.runconf import parse_conf
    assert "currency" not in conf and parse_conf(conf, "inputs").currency == {}  # the conf is one the DAG accepts
    assert _post(client, aid, "generate_inputs").status_code == 409  # already queued
    # the run starts: task instances become sub-tasks
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    now = datetime.now(UTC)
    gateway.tis[(dag_id, run_id)] = [
        TaskInstanceInfo("prepare-input-generation-params", -1, "success", 1, start_date=now),
        TaskInstanceInfo("prepare-keys-file", 0, "running", 1, start_date=now, rendered_map_index="lookup chunk 1/2"),
        TaskInstanceInfo("prepare-keys-file", 1, "up_for_retry", 2, start_date=now),
        TaskInstanceInfo("write-input-files", -1, None, 0)]
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "INPUTS_GENERATION_STARTED"
    assert body["status_count"] == {"TOTAL_IN_QUEUE": 2, "TOTAL": 4, "PENDING": 1, "QUEUED": 1, "STARTED": 1,
                                    "COMPLETED": 1, "CANCELLED": 0, "ERROR": 0}
    tasks = client.get(f"/v2/analyses/{aid}/sub_task_list/", headers=auth("alice")).json()
    assert [t["slug"] for t in tasks][:3] == ["prepare-input-generation-params", "prepare-keys-file-0",
                                              "prepare-keys-file-1"]
    assert tasks[2]["retry_count"] == 1 and tasks[1]["name"] == "lookup chunk 1/2"
    started = client.get(f"/v2/analyses/{aid}/sub_task_list/?subtask_status=STARTED", headers=auth("alice")).json()
    assert [t["slug"] for t in started] == ["prepare-keys-file-0"]
    # the run succeeds: outcome recorded from the record task's XCom
    folder = Path(settings.storage_url.removeprefix("file://")) / f"analysis-{aid}_files-x"
    folder.mkdir(parents=True)
    (folder / "input.tar.gz").write_bytes(b"tarball")
    (folder / "keys-errors.csv").write_text("LocID,PerilID\n")
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    gateway.xcoms[(dag_id, run_id, "record-input-files")] = {
        "input_file": f"file://{folder}/input.tar.gz", "lookup_errors_file": f"file://{folder}/keys-errors.csv",
        "lookup_success_file": f"file://{folder}/keys.csv"}
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "READY" and body["input_file"].endswith(f"/v2/analyses/{aid}/input_file/")
    assert body["task_finished"] is not None
    got = client.get(f"/v2/analyses/{aid}/input_file/", headers=auth("alice"))
    assert got.status_code == 200 and got.content == b"tarball"
    assert client.get(f"/v2/analyses/{aid}/lookup_errors_file/", headers=auth("alice")).text == "LocID,PerilID\n"
    assert client.get(f"/v2/analyses/{aid}/lookup_success_file/", headers=auth("alice")).status_code == 404
    assert client.get(f"/v2/analyses/{aid}/output_file/", headers=auth("alice")).status_code == 404
    # run needs settings (400 naming the field), then goes through the losses DAG
    reply = _post(client, aid, "run")
    assert reply.status_code == 400 and reply.json()["settings"]
    client.post(f"/v2/analyses/{aid}/settings/", json=analysis_settings, headers=auth("alice"))
    reply = _post(client, aid, "run")
    assert reply.status_code == 200 and reply.json()["status"] == "RUN_QUEUED"
    assert reply.json()["status_count"]["TOTAL"] == 0  # a new run shows only its own sub-tasks
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    assert dag_id == LOSSES and conf["input_file"] == f"file://{folder}/input.tar.gz"
    assert conf["analysis_settings"] == analysis_settings and conf["run_mode"] == "v2"
    parse_conf(conf, "losses")
    # the run fails: RUN_ERROR and the traceback file from the run's losses folder
    gateway.runs[(dag_id, run_id)] = RunInfo("failed")
    losses = Path(settings.storage_url.removeprefix("file://")) / f"analysis-{aid}_losses-{conf['run_uuid']}"
    losses.mkdir(parents=True)
    (losses / "traceback.txt").write_text("generate-losses-chunk-1: boom\n")
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_ERROR"
    assert client.get(f"/v2/analyses/{aid}/run_traceback_file/", headers=auth("alice")).text.endswith("boom\n")
    assert client.get(f"/v2/analyses/{aid}/input_generation_traceback_file/",
                      headers=auth("alice")).status_code == 404


def test_generate_and_run_and_cancel(client, gateway, setup, analysis_settings, settings) -> None:
    a = _analysis(client, setup, settings=analysis_settings)
    aid = a["id"]
    assert _post(client, aid, "cancel").status_code == 409  # nothing to cancel
    reply = _post(client, aid, "generate_and_run")
    assert reply.status_code == 200 and reply.json()["status"] == "INPUTS_GENERATION_QUEUED"
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    assert dag_id == BOTH
    from perilflow.operators.runconf import parse_conf
    parse_conf(conf, "both")
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 0, "running", 1)]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_STARTED"
    assert _post(client, aid, "cancel_generate_inputs").status_code == 409
    gateway.fail_next = "Airflow is not answering"
    refused = _post(client, aid, "cancel")
    assert refused.status_code == 503 and "not answering" in refused.json()["detail"]
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_STARTED" and body["task_finished"] is None  # as it was
    assert _post(client, aid, "cancel", user="bob").status_code == 200  # ungrouped objects are shared
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_CANCELLED" and gateway.cancelled == [(dag_id, run_id)]
    assert body["status_count"]["CANCELLED"] == 1 and body["status_count"]["COMPLETED"] == 1
    # cancelled states stick, even though the DAG run reads "failed"
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_CANCELLED"
    # and a generate_and_run can start again
    assert _post(client, aid, "generate_and_run").json()["status"] == "INPUTS_GENERATION_QUEUED"
    dag_id, run_id, _, _ = gateway.triggered[-1]
    gateway.runs[(dag_id, run_id)] = RunInfo("failed")
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("prepare-keys-file", 0, "failed", 3)]
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "INPUTS_GENERATION_ERROR"
    assert body["sub_task_error_ids"] == [(aid << 32) | ((zlib.crc32(b"prepare-keys-file") & 0xFFFF) << 16) | 1]
    assert body["input_generation_traceback_file"].endswith("/input_generation_traceback_file/")


def test_cancel_inputs(client, gateway, setup) -> None:
    a = _analysis(client, setup)
    _post(client, a["id"], "generate_inputs")
    assert _post(client, a["id"], "cancel_analysis_run").status_code == 409
    reply = _post(client, a["id"], "cancel_generate_inputs")
    assert reply.status_code == 200 and reply.json()["status"] == "INPUTS_GENERATION_CANCELLED"
    assert client.delete(f"/v2/analyses/{a['id']}/", headers=auth("alice")).status_code == 204


def test_workflow_refusal_and_preconditions(client, gateway, setup) -> None:
    model, portfolio = setup
    a = _analysis(client, setup)
    gateway.fail_next = "DAG perilflow_input_generation is not known to Airflow yet"
    reply = _post(client, a["id"], "generate_inputs")
    assert reply.status_code == 503 and "not known" in reply.json()["detail"]
    assert client.get(f"/v2/analyses/{a['id']}/", headers=auth("alice")).json()["status"] == "NEW"
    client.delete(f"/v2/portfolios/{portfolio['id']}/location_file/", headers=auth("alice"))
    reply = _post(client, a["id"], "generate_inputs")
    assert reply.status_code == 400 and "location file" in reply.json()["portfolio"][0]


def test_groups_inherited_from_portfolio(client, gateway, add_member, setup, piwind) -> None:
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    model, _ = setup
    portfolio = client.post("/v2/portfolios/", json={"name": "private"}, headers=auth("alice")).json()
    data = (piwind / "exposure_data" / "SourceLocOEDPiWind10.csv").read_bytes()
    client.post(f"/v2/portfolios/{portfolio['id']}/location_file/", files={"file": ("l.csv", data)},
                headers=auth("alice"))
    a = client.post("/v2/analyses/", json={"name": "p", "portfolio": portfolio["id"], "model": model["id"]},
                    headers=auth("alice")).json()
    assert a["groups"] == ["team-a"]
    aid = a["id"]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("bob")).status_code == 404
    assert client.get("/v2/analyses/", headers=auth("bob")).json() == []
    assert client.get(f"/v2/analyses/{aid}/sub_task_list/", headers=auth("bob")).status_code == 404
    assert client.get(f"/v2/analyses/{aid}/input_file/", headers=auth("bob")).status_code == 404
    assert _post(client, aid, "generate_inputs", user="bob").status_code == 403
    assert client.post(f"/v2/analyses/{aid}/settings/", json={}, headers=auth("bob")).status_code == 403
    assert client.delete(f"/v2/analyses/{aid}/", headers=auth("bob")).status_code == 403
    # bob cannot put an analysis on alice's portfolio either
    reply = client.post("/v2/analyses/", json={"name": "q", "portfolio": portfolio["id"], "model": model["id"]},
                        headers=auth("bob"))
    assert reply.status_code == 400
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("root")).status_code == 200
    assert _post(client, aid, "generate_inputs").status_code == 200
    assert client.get("/v2/analyses/1/").status_code == 401


def test_chunking_configuration(client, setup) -> None:
    a = _analysis(client, setup)
    url = f"/v2/analyses/{a['id']}/chunking_configuration/"
    assert client.get(url, headers=auth("alice")).json()["fixed_lookup_chunks"] == 1
    assert client.post(url, json={"fixed_lookup_chunks": 4}, headers=auth("alice")).status_code == 200
    assert client.get(url, headers=auth("alice")).json()["fixed_lookup_chunks"] == 4
    assert client.post(url, json={"fixed_lookup_chunks": -1}, headers=auth("alice")).status_code == 422
    assert client.get("/v2/analyses/999/chunking_configuration/", headers=auth("alice")).status_code == 404


def test_the_portfolio_currency_goes_into_the_input_generation_conf(client, gateway, setup) -> None:
    model, portfolio = setup
    pid = portfolio["id"]
    rates = b"cur_from,cur_to,roe\nGBP,USD,1.25\n"
    assert client.post(f"/v2/portfolios/{pid}/currency_conversion_json/", files={"file": ("r.csv", rates)},
                       headers=auth("alice")).status_code == 200
    a = _analysis(client, setup)
    assert _post(client, a["id"], "generate_inputs").status_code == 200
    assert "currency" not in gateway.triggered[-1][2]  # rates alone convert nothing: no reporting currency
    assert client.post(f"/v2/portfolios/{pid}/reporting_currency/", json={"reporting_currency": "USD"},
                       headers=auth("alice")).status_code == 200
    b = _analysis(client, setup)
    assert _post(client, b["id"], "generate_inputs").status_code == 200
    conf = gateway.triggered[-1][2]
    assert conf["currency"] == {"reporting_currency": "USD", "conversion": {
        "currency_conversion_type": "DictBasedCurrencyRates", "source_type": "list",
        "currency_rates": [["GBP", "USD", 1.25]]}}
    from perilflow.operators.runconf import parse_conf

    assert parse_conf(conf, "inputs").currency == conf["currency"]
