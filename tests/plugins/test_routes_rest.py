"""The rest of issue 6's routes: model data files, storage links, settings templates, scaling; portfolio storage
links, exposure_run, errors_file, file_format conversion; analysis settings_file, run_log_file, storage_links,
file DELETEs, chunk counts; healthcheck_connections; admin groups; pagination of the other lists."""
# ruff: noqa: F811 - the fixtures of test_analyses are imported by name and used as arguments

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq

from perilflow.plugins.api.gateway import RunInfo
from tests.plugins.conftest import auth
from tests.plugins.test_analyses import LOSSES, _analysis, _post, analysis_settings, piwind, setup  # noqa: F401

MODEL = {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1"}


def _storage(settings) -> Path:
    return Path(settings.storage_url.removeprefix("file://"))


def _data_file(client, user: str = "alice", **extra) -> dict:
    reply = client.post("/v2/data_files/", json={"file_description": "events", **extra}, headers=auth(user))
    assert reply.status_code == 201, reply.text
    return reply.json()


# ----------------------------------------------------------------------------- models


def test_model_data_files_and_storage_links(client, add_member, settings) -> None:
    d1, d2 = _data_file(client), _data_file(client)
    assert client.post(f"/v2/data_files/{d1['id']}/content/", files={"file": ("ev.csv", b"a\n1\n")},
                       headers=auth("alice")).status_code == 200
    model = client.post("/v2/models/", json={**MODEL, "data_files": [d1["id"]],
                                             "runtime": {"model_data_dir": "PiWind/model_data"}},
                        headers=auth("alice")).json()
    assert model["data_files"] == [d1["id"]]
    url = f"/v2/models/{model['id']}/data_files/"
    assert [d["id"] for d in client.get(url, headers=auth("alice")).json()] == [d1["id"]]
    reply = client.post(url, json={"data_files": [d2["id"], d1["id"]]}, headers=auth("alice"))
    assert reply.status_code == 200 and [d["id"] for d in reply.json()] == [d1["id"], d2["id"]]
    assert client.get(f"/v2/models/{model['id']}/", headers=auth("alice")).json()["data_files"] == [d1["id"], d2["id"]]
    links = client.get(f"/v2/models/{model['id']}/storage_links/", headers=auth("alice")).json()
    assert links["data_files"][str(d1["id"])].startswith(f"data_files/{d1['id']}/content-")
    assert links["data_files"][str(d2["id"])] is None and links["model_data_dir"] == "PiWind/model_data"
    # unknown or another group's data file: 400 naming the field
    reply = client.post(url, json={"data_files": [999]}, headers=auth("alice"))
    assert reply.status_code == 400 and "999" in reply.json()["data_files"][0]
    add_member("bob", "team-b")
    hidden = _data_file(client, "bob")
    assert client.post(url, json={"data_files": [hidden["id"]]}, headers=auth("alice")).status_code == 400
    assert client.post("/v2/models/", json={**MODEL, "version_id": "2", "data_files": [hidden["id"]]},
                       headers=auth("alice")).status_code == 400
    assert client.post(url, json={"data_files": "x"}, headers=auth("alice")).status_code == 422
    assert client.get(url).status_code == 401
    assert client.get("/v2/models/999/data_files/", headers=auth("alice")).status_code == 404
    assert client.get("/v2/models/999/storage_links/", headers=auth("alice")).status_code == 404
    # PUT without data_files unlinks them
    client.put(f"/v2/models/{model['id']}/", json=MODEL, headers=auth("alice"))
    assert client.get(url, headers=auth("alice")).json() == []


def test_model_other_group(client, add_member) -> None:
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    model = client.post("/v2/models/", json=MODEL, headers=auth("alice")).json()
    for path in ("data_files/", "storage_links/", "setting_templates/", "scaling_configuration/"):
        assert client.get(f"/v2/models/{model['id']}/{path}", headers=auth("bob")).status_code == 404, path
    assert client.post(f"/v2/models/{model['id']}/data_files/", json={"data_files": []},
                       headers=auth("bob")).status_code == 403
    assert client.post(f"/v2/models/{model['id']}/scaling_configuration/", json={"worker_count_max": 3},
                       headers=auth("bob")).status_code == 403
    assert client.post(f"/v2/models/{model['id']}/setting_templates/", json={"name": "t"},
                       headers=auth("bob")).status_code == 403


def test_scaling_configuration_post(client) -> None:
    model = client.post("/v2/models/", json=MODEL, headers=auth("alice")).json()
    url = f"/v2/models/{model['id']}/scaling_configuration/"
    reply = client.post(url, json={"scaling_strategy": "DYNAMIC_TASKS", "worker_count_max": 15,
                                   "chunks_per_worker": 4, "worker_count_min": 1}, headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert client.get(url, headers=auth("alice")).json() == {
        "scaling_strategy": "DYNAMIC_TASKS", "worker_count_fixed": 1, "worker_count_max": 15,
        "worker_count_min": 1, "chunks_per_worker": 4}
    # a partial POST keeps the other fields
    assert client.post(url, json={"worker_count_fixed": 5}, headers=auth("alice")).json()["worker_count_max"] == 15
    for body, field in (({"scaling_strategy": "ALWAYS_ON"}, "scaling_strategy"),
                        ({"worker_count_fixed": -1}, "worker_count_fixed"),
                        ({"worker_count_max": "5"}, "worker_count_max"),
                        ({"chunks_per_worker": 0}, "chunks_per_worker"),
                        ({"worker_count_min": 20}, "worker_count_min"),
                        ({"worker_count_max": 0}, "worker_count_max"),
                        ({"bogus": 1}, "bogus")):
        reply = client.post(url, json=body, headers=auth("alice"))
        assert reply.status_code == 400 and field in reply.json(), (body, reply.text)
    assert client.post(url, json=[1], headers=auth("alice")).status_code == 400
    client.patch(f"/v2/models/{model['id']}/", json={"run_mode": "V1"}, headers=auth("alice"))
    reply = client.post(url, json={"scaling_strategy": "DYNAMIC_TASKS"}, headers=auth("alice"))
    assert reply.status_code == 400 and "V1" in reply.json()["scaling_strategy"][0]
    assert client.post(url, json={}).status_code == 401
    assert client.post("/v2/models/999/scaling_configuration/", json={}, headers=auth("alice")).status_code == 404


def test_setting_templates(client, setup, analysis_settings) -> None:
    model, _ = setup
    url = f"/v2/models/{model['id']}/setting_templates/"
    assert client.get(url, headers=auth("alice")).json() == []
    reply = client.post(url, json={"name": "S10", "description": "all ORD outputs", "file": analysis_settings},
                        headers=auth("alice"))
    assert reply.status_code == 201, reply.text
    t = reply.json()
    assert t["name"] == "S10" and t["file_url"].endswith(f"{url}{t['id']}/content/")
    assert client.get(f"{url}{t['id']}/content/", headers=auth("alice")).json() == analysis_settings
    # invalid settings: 400 naming the field
    bad = client.post(url, json={"name": "bad", "file": {"gul_output": "yes"}}, headers=auth("alice"))
    assert bad.status_code == 400 and bad.json()["file"]
    assert client.post(url, json={"description": "no name"}, headers=auth("alice")).status_code == 422
    # copy an analysis's settings
    aid = _analysis(client, setup, settings=analysis_settings)["id"]
    copied = client.post(url, json={"name": "from analysis", "analysis_id": aid}, headers=auth("alice")).json()
    assert client.get(f"{url}{copied['id']}/content/", headers=auth("alice")).json() == analysis_settings
    no_settings = _analysis(client, setup)["id"]
    reply = client.post(url, json={"name": "x", "analysis_id": no_settings}, headers=auth("alice"))
    assert reply.status_code == 400 and "no settings" in reply.json()["analysis_id"][0]
    assert client.post(url, json={"name": "x", "analysis_id": 999}, headers=auth("alice")).status_code == 400
    # update, content, delete
    reply = client.patch(f"{url}{t['id']}/", json={"description": "v2"}, headers=auth("alice"))
    assert reply.json()["description"] == "v2" and reply.json()["name"] == "S10"
    reply = client.put(f"{url}{t['id']}/", json={"name": "renamed"}, headers=auth("alice"))
    assert reply.json()["name"] == "renamed" and reply.json()["description"] == ""
    assert client.delete(f"{url}{t['id']}/content/", headers=auth("alice")).status_code == 204
    assert client.get(f"{url}{t['id']}/content/", headers=auth("alice")).status_code == 404
    assert client.get(f"{url}{t['id']}/", headers=auth("alice")).json()["file_url"] is None
    assert client.post(f"{url}{t['id']}/content/", json={"gul_output": 1}, headers=auth("alice")).status_code == 400
    assert client.post(f"{url}{t['id']}/content/", json=analysis_settings, headers=auth("alice")).status_code == 200
    assert [x["id"] for x in client.get(url, headers=auth("alice")).json()] == [t["id"], copied["id"]]
    assert client.delete(f"{url}{t['id']}/", headers=auth("alice")).status_code == 204
    assert client.get(f"{url}{t['id']}/", headers=auth("alice")).status_code == 404
    # a template is reached only through its own model
    other = client.post("/v2/models/", json={**MODEL, "version_id": "9"}, headers=auth("alice")).json()
    assert client.get(f"/v2/models/{other['id']}/setting_templates/{copied['id']}/",
                      headers=auth("alice")).status_code == 404
    assert client.get(url).status_code == 401


# ----------------------------------------------------------------------------- portfolios


def test_portfolio_storage_links(client, settings, add_member, piwind) -> None:
    p = client.post("/v2/portfolios/", json={"name": "linked"}, headers=auth("alice")).json()
    url = f"/v2/portfolios/{p['id']}/storage_links/"
    assert client.get(url, headers=auth("alice")).json() == {
        "location_file": None, "accounts_file": None, "reinsurance_info_file": None, "reinsurance_scope_file": None}
    source = piwind / "exposure_data" / "SourceLocOEDPiWind10.csv"
    (_storage(settings) / "incoming").mkdir(parents=True)
    (_storage(settings) / "incoming" / "loc.csv").write_bytes(source.read_bytes())
    reply = client.post(url, json={"location_file": "incoming/loc.csv"}, headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    key = reply.json()["location_file"]
    assert key.startswith(f"portfolios/{p['id']}/location_file-") and key.endswith("-loc.csv")
    assert client.get(f"/v2/portfolios/{p['id']}/location_file/", headers=auth("alice")).content == source.read_bytes()
    assert (_storage(settings) / "incoming" / "loc.csv").exists()  # copied, the source stays
    bad = {"location_file": "../etc/passwd", "accounts_file": "incoming/missing.csv",
           "reinsurance_info_file": "/abs.csv", "reinsurance_scope_file": 3}
    reply = client.post(url, json=bad, headers=auth("alice"))
    assert reply.status_code == 400 and set(reply.json()) == set(bad)
    assert client.post(url, json={}, headers=auth("alice")).json()["non_field_errors"]
    reply = client.post(url, json={"exposure": "x"}, headers=auth("alice"))
    assert "not a portfolio file" in reply.json()["exposure"][0]
    (_storage(settings) / "incoming" / "notes.txt").write_text("x")
    assert client.post(url, json={"location_file": "incoming/notes.txt"}, headers=auth("alice")).status_code == 400
    # another group's portfolio file cannot be linked
    add_member("bob", "team-b")
    theirs = client.post("/v2/portfolios/", json={"name": "b"}, headers=auth("bob")).json()
    client.post(f"/v2/portfolios/{theirs['id']}/location_file/", files={"file": ("l.csv", source.read_bytes())},
                headers=auth("bob"))
    their_key = client.get(f"/v2/portfolios/{theirs['id']}/storage_links/", headers=auth("bob")).json()["location_file"]
    reply = client.post(url, json={"location_file": their_key}, headers=auth("alice"))
    assert reply.status_code == 400 and "group" in reply.json()["location_file"][0]
    assert client.get(f"/v2/portfolios/{theirs['id']}/storage_links/", headers=auth("alice")).status_code == 404
    assert client.post(f"/v2/portfolios/{theirs['id']}/storage_links/", json={"location_file": "incoming/loc.csv"},
                       headers=auth("alice")).status_code == 403
    assert client.get(url).status_code == 401
    assert client.get("/v2/portfolios/999/storage_links/", headers=auth("alice")).status_code == 404


def test_file_format_conversion(client, piwind) -> None:
    p = client.post("/v2/portfolios/", json={"name": "conv"}, headers=auth("alice")).json()
    data = (piwind / "exposure_data" / "SourceLocOEDPiWind10.csv").read_bytes()
    client.post(f"/v2/portfolios/{p['id']}/location_file/", files={"file": ("loc.csv", data)}, headers=auth("alice"))
    url = f"/v2/portfolios/{p['id']}/location_file/"
    assert client.get(f"{url}?file_format=csv", headers=auth("alice")).content == data  # as stored
    reply = client.get(f"{url}?file_format=parquet", headers=auth("alice"))
    assert reply.status_code == 200 and 'filename="loc.parquet"' in reply.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(reply.content))
    assert table.num_rows == 10 and "LocNumber" in table.column_names
    # parquet upload, csv download
    client.post(url, files={"file": ("loc.parquet", reply.content)}, headers=auth("alice"))
    back = client.get(f"{url}?file_format=csv", headers=auth("alice"))
    assert back.status_code == 200 and back.text.splitlines()[0].replace('"', "").startswith(
        data.decode().splitlines()[0][:20])
    assert len(back.text.strip().splitlines()) == 11
    assert client.get(f"{url}?file_format=xlsx", headers=auth("alice")).status_code == 422
    # a csv that is no table cannot become parquet: 400 naming file_format
    client.post(url, files={"file": ("bad.csv", b"a,b\n1,2,3\n")}, headers=auth("alice"))
    reply = client.get(f"{url}?file_format=parquet", headers=auth("alice"))
    assert reply.status_code == 400 and reply.json()["file_format"]


def test_exposure_run(client, piwind, add_member) -> None:
    p = client.post("/v2/portfolios/", json={"name": "exp"}, headers=auth("alice")).json()
    url = f"/v2/portfolios/{p['id']}/exposure_run/"
    assert client.get(url, headers=auth("alice")).status_code == 404
    reply = client.post(url, json={}, headers=auth("alice"))
    assert reply.status_code == 400 and set(reply.json()) == {"location_file", "accounts_file"}
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).json()["exposure_status"] == \
        "INSUFFICIENT_DATA"
    for kind, name in (("location_file", "SourceLocOEDPiWind10.csv"), ("accounts_file", "SourceAccOEDPiWind.csv")):
        client.post(f"/v2/portfolios/{p['id']}/{kind}/",
                    files={"file": (name, (piwind / "exposure_data" / name).read_bytes())}, headers=auth("alice"))
    reply = client.post(url, json={"params": {"loss_factor": [0.5], "model_perils_covered": ["WTC"]}},
                        headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["exposure_status"] == "RUN_COMPLETED" and reply.json()["locations"] == 10
    csv = client.get(url, headers=auth("alice"))
    assert csv.status_code == 200 and f"portfolio_{p['id']}_exposure_run.csv" in csv.headers["content-disposition"]
    lines = csv.text.strip().splitlines()
    assert lines[0] == "PortNumber,AccNumber,LocNumber,loss_gul,loss_il" and len(lines) == 11
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).json()["exposure_status"] == "RUN_COMPLETED"
    # bad params: 422 naming them; a peril no location covers: 400, status ERROR, errors_file
    reply = client.post(url, json={"params": {"kernel_alloc_rule_il": 1}}, headers=auth("alice"))
    assert reply.status_code == 422 and "params.kernel_alloc_rule_il" in reply.json()
    assert client.post(url, json={"params": {"oasis_files_dir": "/tmp"}}, headers=auth("alice")).status_code == 422
    reply = client.post(url, json={"params": {"model_perils_covered": ["QEQ"]}}, headers=auth("alice"))
    assert reply.status_code == 400 and reply.json()["exposure_status"] == "ERROR"
    errors = client.get(f"/v2/portfolios/{p['id']}/errors_file/", headers=auth("alice"))
    assert errors.status_code == 200 and "QEQ" in errors.text
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("alice")).json()["exposure_status"] == "ERROR"
    # groups, auth, 404
    add_member("bob", "team-b")
    assert client.post(url, json={}, headers=auth("bob")).status_code == 200  # ungrouped: bob may run it
    add_member("alice", "team-a")
    client.patch(f"/v2/portfolios/{p['id']}/", json={"groups": ["team-a"]}, headers=auth("alice"))
    assert client.post(url, json={}, headers=auth("bob")).status_code == 403
    assert client.get(url, headers=auth("bob")).status_code == 404
    assert client.get(f"/v2/portfolios/{p['id']}/errors_file/", headers=auth("bob")).status_code == 404
    assert client.post(url, json={}).status_code == 401
    assert client.post("/v2/portfolios/999/exposure_run/", json={}, headers=auth("alice")).status_code == 404


# ----------------------------------------------------------------------------- analyses


def test_settings_file(client, setup, analysis_settings) -> None:
    aid = _analysis(client, setup)["id"]
    url = f"/v2/analyses/{aid}/settings_file/"
    assert client.get(url, headers=auth("alice")).status_code == 404
    reply = client.post(url, files={"file": ("s.json", json.dumps(analysis_settings).encode())}, headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    got = client.get(url, headers=auth("alice"))
    assert got.json() == analysis_settings and "settings.json" in got.headers["content-disposition"]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["settings_file"].endswith(url)
    for data, field in ((b"{not json", "file"), (b"[1, 2]", "file"), (b"\xff\xfe", "file")):
        reply = client.post(url, files={"file": ("s.json", data)}, headers=auth("alice"))
        assert reply.status_code == 400 and reply.json()[field], data
    reply = client.post(url, files={"file": ("s.json", json.dumps({**analysis_settings, "gul_output": "x"}).encode())},
                        headers=auth("alice"))
    assert reply.status_code == 400 and any("gul_output" in k for k in reply.json())
    assert client.post(url, headers=auth("alice")).status_code == 422  # no file field
    assert client.get(url).status_code == 401
    assert client.get("/v2/analyses/999/settings_file/", headers=auth("alice")).status_code == 404
    assert client.delete(url, headers=auth("alice")).status_code == 204
    assert client.delete(url, headers=auth("alice")).status_code == 404
    assert client.get(f"/v2/analyses/{aid}/settings/", headers=auth("alice")).status_code == 404


def _run_completed(client, gateway, setup, settings, analysis_settings) -> tuple[int, Path]:
    aid = _analysis(client, setup, settings=analysis_settings)["id"]
    client.post(f"/v2/analyses/{aid}/generate_inputs/", headers=auth("alice"))
    dag_id, run_id, _, _ = gateway.triggered[-1]
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    files = _storage(settings) / f"analysis-{aid}_files-in"
    files.mkdir(parents=True)
    (files / "input.tar.gz").write_bytes(b"in")
    gateway.xcoms[(dag_id, run_id, "record-input-files")] = {"input_file": f"file://{files}/input.tar.gz"}
    gateway.xcom_values[(dag_id, run_id, "prepare-input-generation-params", "n_lookup_chunks")] = 3
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "READY"
    reply = _post(client, aid, "run")
    assert reply.status_code == 200, reply.text
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    assert dag_id == LOSSES
    losses = _storage(settings) / f"analysis-{aid}_losses-{conf['run_uuid']}"
    (losses / "logs").mkdir(parents=True)
    (losses / "output.tar.gz").write_bytes(b"out")
    (losses / "logs" / "generate-losses-chunk-0-try1.log").write_text("chunk 0 done\n")
    (losses / "logs" / "generate-losses-output-try1.log").write_text("merged\n")
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    gateway.xcom_values[(dag_id, run_id, "prepare-losses-generation-params", "n_loss_chunks")] = 2
    gateway.xcom_values[(dag_id, run_id, "prepare-losses-generation-params", "n_events")] = 1000
    return aid, losses


def test_run_files_logs_links_and_counts(client, gateway, setup, settings, analysis_settings) -> None:
    aid, losses = _run_completed(client, gateway, setup, settings, analysis_settings)
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_STARTED" and body["lookup_chunks"] == 3 and body["analysis_chunks"] == 2
    assert body["num_events_total"] == 1000 and body["num_events_complete"] is None and body["run_log_file"] is None
    # no log before the run ended; files cannot be removed while it runs
    assert client.get(f"/v2/analyses/{aid}/run_log_file/", headers=auth("alice")).status_code == 404
    reply = client.delete(f"/v2/analyses/{aid}/output_file/", headers=auth("alice"))
    assert reply.status_code == 409 and "RUN_STARTED" in reply.json()["detail"]
    dag_id, run_id, _, _ = gateway.triggered[-1]
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == "RUN_COMPLETED" and body["num_events_complete"] == 1000
    assert body["run_log_file"].endswith(f"/v2/analyses/{aid}/run_log_file/")
    listed = client.get("/v2/analyses/", headers=auth("alice")).json()
    assert [a["lookup_chunks"] for a in listed] == [3] and listed[0]["run_log_file"] == body["run_log_file"]
    log = client.get(f"/v2/analyses/{aid}/run_log_file/", headers=auth("alice"))
    assert log.status_code == 200 and log.text.index("chunk 0 done") < log.text.index("merged")
    assert "==> generate-losses-chunk-0-try1.log <==" in log.text
    links = client.get(f"/v2/analyses/{aid}/storage_links/", headers=auth("alice")).json()
    assert links["output_file"] == f"{losses.name}/output.tar.gz" and links["run_log_file"] == f"{losses.name}/logs/"
    assert links["input_file"].endswith("_files-in/input.tar.gz") and links["run_traceback_file"] is None
    # this input generation wrote no summary files (tests/plugins/test_summary_files.py serves them): 404
    for name in ("lookup_validation_file", "summary_levels_file"):
        reply = client.get(f"/v2/analyses/{aid}/{name}/", headers=auth("alice"))
        assert reply.status_code == 404 and "no " + name.replace("_", " ") in reply.json()["detail"]
    # DELETE output_file and run_log_file: gone from the JSON and from storage
    assert client.delete(f"/v2/analyses/{aid}/output_file/", headers=auth("alice")).status_code == 204
    assert not (losses / "output.tar.gz").exists()
    assert client.get(f"/v2/analyses/{aid}/output_file/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/analyses/{aid}/output_file/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/analyses/{aid}/run_log_file/", headers=auth("alice")).status_code == 204
    assert not (losses / "logs").exists()
    assert client.get(f"/v2/analyses/{aid}/run_log_file/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/analyses/{aid}/run_traceback_file/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/analyses/{aid}/output_file/").status_code == 401
    assert client.get(f"/v2/analyses/{aid}/storage_links/").status_code == 401
    assert client.get("/v2/analyses/999/storage_links/", headers=auth("alice")).status_code == 404


def test_analysis_files_of_another_group(client, gateway, setup, settings, analysis_settings, add_member) -> None:
    aid, _ = _run_completed(client, gateway, setup, settings, analysis_settings)
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    client.patch(f"/v2/portfolios/{setup[1]['id']}/", json={"groups": ["team-a"]}, headers=auth("alice"))
    for path in ("settings_file/", "run_log_file/", "storage_links/", "lookup_validation_file/", "data_files/"):
        assert client.get(f"/v2/analyses/{aid}/{path}", headers=auth("bob")).status_code == 404, path
    for path in ("output_file/", "run_log_file/", "settings_file/"):
        assert client.delete(f"/v2/analyses/{aid}/{path}", headers=auth("bob")).status_code == 403, path
    assert client.post(f"/v2/analyses/{aid}/settings_file/", files={"file": ("s.json", b"{}")},
                       headers=auth("bob")).status_code == 403


def test_complex_model_data_files(client, setup, add_member) -> None:
    d = _data_file(client)
    model, portfolio = setup
    reply = client.post("/v2/analyses/", json={"name": "c", "portfolio": portfolio["id"], "model": model["id"],
                                               "complex_model_data_files": [d["id"]]}, headers=auth("alice"))
    assert reply.status_code == 201 and reply.json()["complex_model_data_files"] == [d["id"]]
    aid = reply.json()["id"]
    assert [x["id"] for x in client.get(f"/v2/analyses/{aid}/data_files/", headers=auth("alice")).json()] == [d["id"]]
    assert client.get("/v2/analyses/", headers=auth("alice")).json()[0]["complex_model_data_files"] == [d["id"]]
    assert client.patch(f"/v2/analyses/{aid}/", json={"complex_model_data_files": []},
                        headers=auth("alice")).json()["complex_model_data_files"] == []
    reply = client.patch(f"/v2/analyses/{aid}/", json={"complex_model_data_files": [999]}, headers=auth("alice"))
    assert reply.status_code == 400 and reply.json()["complex_model_data_files"]


# ----------------------------------------------------------------------------- base, groups, pagination


def test_healthcheck_connections(client, gateway) -> None:
    reply = client.get("/healthcheck_connections/")  # no token, as the reference
    assert reply.status_code == 200 and reply.json() == {"status": "OK", "database": "OK", "storage": "OK",
                                                          "airflow": "OK"}
    gateway.down = "metadata DB refused the connection to 10.0.0.5"
    reply = client.get("/healthcheck_connections/")
    assert reply.status_code == 503 and reply.json()["airflow"] == "ERROR" and reply.json()["status"] == "ERROR"
    assert "10.0.0.5" not in reply.text  # details stay in the server log


def test_groups_admin(client) -> None:
    assert client.get("/v2/groups/").status_code == 401
    assert client.get("/v2/groups/", headers=auth("alice")).status_code == 403
    assert client.post("/v2/groups/", json={"name": "x"}, headers=auth("alice")).status_code == 403
    reply = client.post("/v2/groups/", json={"name": "team-a", "members": ["alice", "bob", "alice"]},
                        headers=auth("root"))
    assert reply.status_code == 201 and reply.json()["members"] == ["alice", "bob"]
    gid = reply.json()["id"]
    assert client.post("/v2/groups/", json={"name": "team-a"}, headers=auth("root")).status_code == 400
    assert client.post("/v2/groups/", json={"name": "/bad"}, headers=auth("root")).status_code == 422
    # membership takes effect: alice's new portfolio gets team-a, carol cannot see it
    p = client.post("/v2/portfolios/", json={"name": "p"}, headers=auth("alice")).json()
    assert p["groups"] == ["team-a"]
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("carol")).status_code == 404
    reply = client.post(f"/v2/groups/{gid}/members/", json={"username": "carol"}, headers=auth("root"))
    assert reply.status_code == 201 and reply.json()["members"] == ["alice", "bob", "carol"]
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("carol")).status_code == 200
    again = client.post(f"/v2/groups/{gid}/members/", json={"username": "carol"}, headers=auth("root"))
    assert again.status_code == 400 and again.json()["username"]
    assert client.delete(f"/v2/groups/{gid}/members/carol/", headers=auth("root")).status_code == 204
    assert client.delete(f"/v2/groups/{gid}/members/carol/", headers=auth("root")).status_code == 404
    reply = client.put(f"/v2/groups/{gid}/", json={"name": "team-z", "members": ["bob"]}, headers=auth("root"))
    assert reply.json() == {"id": gid, "name": "team-z", "members": ["bob"]}
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("root")).json()["groups"] == ["team-z"]
    assert [g["name"] for g in client.get("/v2/groups/", headers=auth("root")).json()] == ["team-z"]
    assert client.delete(f"/v2/groups/{gid}/", headers=auth("root")).status_code == 204
    assert client.get(f"/v2/groups/{gid}/", headers=auth("root")).status_code == 404
    assert client.get(f"/v2/portfolios/{p['id']}/", headers=auth("carol")).json()["groups"] == []


def test_pagination_of_other_lists(client) -> None:
    for i in range(5):
        client.post("/v2/models/", json={**MODEL, "version_id": str(i)}, headers=auth("alice"))
        client.post("/v2/portfolios/", json={"name": f"p{i}"}, headers=auth("alice"))
        _data_file(client)
    for path in ("/v2/models/", "/v2/portfolios/", "/v2/data_files/"):
        assert len(client.get(path, headers=auth("alice")).json()) == 5  # no limit: a plain list
        page = client.get(f"{path}?limit=2&offset=2", headers=auth("alice")).json()
        assert page["count"] == 5 and len(page["results"]) == 2
        assert page["next"].endswith(f"{path}?limit=2&offset=4")
        assert page["previous"].endswith(f"{path}?limit=2&offset=0")
        last = client.get(page["next"].split("/perilflow", 1)[-1].removeprefix("http://testserver"),
                          headers=auth("alice")).json()
        assert len(last["results"]) == 1 and last["next"] is None
        assert client.get(f"{path}?limit=0", headers=auth("alice")).status_code == 422
    page = client.get("/v2/portfolios/?name__contains=p&limit=1", headers=auth("alice")).json()
    assert "name__contains=p" in page["next"] and page["count"] == 5
