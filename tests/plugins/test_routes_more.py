"""Second-slice routes: list pagination, run_progress, tar list/extract, task statuses with logs, data_files."""
# ruff: noqa: F811 - the fixtures of test_analyses are imported by name and used as arguments

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo, format_log
from perilflow.plugins.api.routes.analyses import sub_task_id
from tests.plugins.conftest import auth
from tests.plugins.test_analyses import _analysis, _post, analysis_settings, piwind, setup  # noqa: F401 - fixtures


def _tarball(path: Path, members: dict[str, bytes], link: str | None = None, evil: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
        if evil:
            info = tarfile.TarInfo(evil)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))


def _completed(client, setup, gateway, settings, analysis_settings, members: dict[str, bytes], **bad):
    """An analysis whose generate_and_run succeeded, with output.tar.gz holding ``members``."""
    aid = _analysis(client, setup)["id"]
    client.post(f"/v2/analyses/{aid}/settings/", json=analysis_settings, headers=auth("alice"))
    assert _post(client, aid, "generate_and_run").status_code == 200
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    root = Path(settings.storage_url.removeprefix("file://"))
    output = root / f"analysis-{aid}_losses-{conf['run_uuid']}" / "output.tar.gz"
    _tarball(output, members, **bad)
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 0, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 1, "failed", 2),
                                     TaskInstanceInfo("generate-losses", -1, "skipped", 0)]
    gateway.xcoms[(dag_id, run_id, "record-losses-files")] = {"output_file": f"file://{output}"}
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_COMPLETED"
    return aid, dag_id, run_id, conf


def test_list_pagination(client, setup) -> None:
    ids = [_analysis(client, setup, name=f"a{i}")["id"] for i in range(5)]
    plain = client.get("/v2/analyses/", headers=auth("alice")).json()
    assert [a["id"] for a in plain] == ids  # no limit: a plain list, as the reference
    page = client.get("/v2/analyses/?limit=2&offset=2", headers=auth("alice")).json()
    assert page["count"] == 5 and [a["id"] for a in page["results"]] == ids[2:4]
    assert page["next"].endswith("/v2/analyses/?limit=2&offset=4")
    assert page["previous"].endswith("/v2/analyses/?limit=2&offset=0")
    last = client.get("/v2/analyses/?limit=2&offset=4&name=a4", headers=auth("alice")).json()
    assert last["count"] == 1 and last["results"] == []  # the filter counts too
    assert client.get("/v2/analyses/?limit=0", headers=auth("alice")).status_code == 422
    # the list and the detail give the same JSON
    detail = client.get(f"/v2/analyses/{ids[0]}/", headers=auth("alice")).json()
    listed = {k: v for k, v in plain[0].items() if k not in ("status_count", "sub_task_count")}
    assert listed == {k: v for k, v in detail.items() if k not in ("status_count", "sub_task_count")}
    assert client.get("/v2/analyses/?limit=1", headers=auth("carol")).json()["count"] == 5  # ungrouped
    assert client.get("/v2/analyses/").status_code == 401


def test_tar_list_and_extract(client, setup, gateway, settings, analysis_settings) -> None:
    aid, *_ = _completed(client, setup, gateway, settings, analysis_settings,
                         {"output/gul_S1_palt.csv": b"SummaryId,MeanLoss\n1,2.5\n", "output/il_S1_ept.csv": b"x\n"})
    names = client.get(f"/v2/analyses/{aid}/output_file_tar_list/", headers=auth("alice")).json()
    assert names == ["output/gul_S1_palt.csv", "output/il_S1_ept.csv"]
    got = client.get(f"/v2/analyses/{aid}/output_file_tar_extract/", params={"filename": "output/gul_S1_palt.csv"},
                     headers=auth("alice"))
    assert got.status_code == 200 and got.content == b"SummaryId,MeanLoss\n1,2.5\n"
    assert got.headers["content-type"].startswith("text/csv")
    for bad in ("/etc/passwd", "../output/gul_S1_palt.csv", "output/../../x"):
        reply = client.get(f"/v2/analyses/{aid}/output_file_tar_extract/", params={"filename": bad},
                           headers=auth("alice"))
        assert reply.status_code == 400 and "filename" in reply.json(), bad
    assert client.get(f"/v2/analyses/{aid}/output_file_tar_extract/", params={"filename": "output/nope.csv"},
                      headers=auth("alice")).status_code == 404
    assert client.get(f"/v2/analyses/{aid}/input_file_tar_list/", headers=auth("alice")).status_code == 404
    assert client.get(f"/v2/analyses/{aid}/output_file_tar_list/").status_code == 401


@pytest.mark.parametrize("bad", [{"link": "output/link.csv"}, {"evil": "../escape.csv"}])
def test_tarballs_with_links_or_escapes_are_refused(client, setup, gateway, settings, analysis_settings, bad) -> None:
    aid, *_ = _completed(client, setup, gateway, settings, analysis_settings, {"output/a.csv": b"a\n"}, **bad)
    reply = client.get(f"/v2/analyses/{aid}/output_file_tar_list/", headers=auth("alice"))
    assert reply.status_code == 400 and ("link" in reply.text or "'..'" in reply.text), reply.text
    reply = client.get(f"/v2/analyses/{aid}/output_file_tar_extract/", params={"filename": "output/a.csv"},
                       headers=auth("alice"))
    assert reply.status_code == 400


def test_run_progress(client, setup, gateway, settings, analysis_settings) -> None:
    aid, *_ = _completed(client, setup, gateway, settings, analysis_settings, {"a": b""})
    body = client.get(f"/v2/analyses/{aid}/run_progress/", headers=auth("alice")).json()
    assert body["progress"] == "1/2 gul stages complete" and body["completed"] == 1 and body["total"] == 2
    assert body["sub_tasks_total"] == 4 and body["status"] == "RUN_COMPLETED"


def test_analysis_task_statuses_and_logs(client, setup, gateway, settings, analysis_settings) -> None:
    aid, dag_id, run_id, conf = _completed(client, setup, gateway, settings, analysis_settings, {"a": b""})
    failed = sub_task_id(aid, "generate-losses-chunk", 1)
    tasks = client.get(f"/v2/analyses/{aid}/sub_task_list/", headers=auth("alice")).json()
    by_slug = {t["slug"]: t for t in tasks}
    assert by_slug["generate-losses-chunk-1"]["id"] == failed
    assert by_slug["generate-losses-chunk-1"]["error_log"].endswith(f"/v2/analysis-task-statuses/{failed}/error_log/")
    assert by_slug["generate-losses-chunk-1"]["retry_log"].endswith(f"/{failed}/retry_log/")
    assert by_slug["generate-losses-chunk-0"]["retry_log"] is None and by_slug["generate-losses"]["output_log"] is None
    # admin only, as the reference
    assert client.get("/v2/analysis-task-statuses/", headers=auth("alice")).status_code == 403
    listed = client.get("/v2/analysis-task-statuses/", params={"analysis": aid}, headers=auth("root")).json()
    assert {t["id"] for t in listed} == {t["id"] for t in tasks}
    errors = client.get("/v2/analysis-task-statuses/", params={"status": "ERROR"}, headers=auth("root")).json()
    assert [t["id"] for t in errors] == [failed]
    chunks = client.get("/v2/analysis-task-statuses/", params={"slug__contains": "chunk", "limit": 1},
                        headers=auth("root")).json()
    assert len(chunks) == 1
    assert client.get(f"/v2/analysis-task-statuses/{failed}/", headers=auth("root")).json()["status"] == "ERROR"
    assert client.get(f"/v2/analysis-task-statuses/{failed + 7}/", headers=auth("root")).status_code == 404
    # logs: Airflow's for each try, the stored error first for the error log
    gateway.logs[(dag_id, run_id, "generate-losses-chunk", 1, 1)] = "try one\n"
    gateway.logs[(dag_id, run_id, "generate-losses-chunk", 1, 2)] = "t2 info starting\nt2 error boom\n"
    base = f"/v2/analysis-task-statuses/{failed}"
    assert client.get(f"{base}/output_log/", headers=auth("root")).text == "t2 info starting\nt2 error boom\n"
    assert client.get(f"{base}/retry_log/", headers=auth("root")).text == "--- try 1 ---\ntry one\n"
    assert client.get(f"{base}/error_log/", headers=auth("root")).text == "t2 error boom\n"
    folder = Path(settings.storage_url.removeprefix("file://")) / f"analysis-{aid}_losses-{conf['run_uuid']}"
    (folder / "errors").mkdir(parents=True, exist_ok=True)
    (folder / "errors" / "generate-losses-chunk-1.log").write_text("generate-losses-chunk-1 (try 2): exited 1\n")
    assert client.get(f"{base}/error_log/", headers=auth("root")).text == "generate-losses-chunk-1 (try 2): exited 1\n"
    ok = sub_task_id(aid, "generate-losses-chunk", 0)
    assert client.get(f"/v2/analysis-task-statuses/{ok}/retry_log/", headers=auth("root")).status_code == 404
    assert client.get(f"/v2/analysis-task-statuses/{ok}/error_log/", headers=auth("root")).status_code == 404


def test_format_log() -> None:
    content = [{"timestamp": "2026-01-01T00:00:00Z", "level": "info", "event": "hello"}, "plain"]
    assert format_log(content) == "2026-01-01T00:00:00Z info hello\nplain\n"
    assert format_log(None) == ""


def test_data_files_crud_and_content(client, add_member) -> None:
    add_member("alice", "team-a")
    created = client.post("/v2/data_files/", json={"file_description": "events", "file_category": "events"},
                          headers=auth("alice"))
    assert created.status_code == 201, created.text
    d = created.json()
    assert d["groups"] == ["team-a"] and d["file"] is None
    did = d["id"]
    assert client.get(f"/v2/data_files/{did}/content/", headers=auth("alice")).status_code == 404
    up = client.post(f"/v2/data_files/{did}/content/", files={"file": ("../events.csv", b"event_id\n1\n", "text/csv")},
                     headers=auth("alice"))
    assert up.status_code == 200 and up.json()["filename"] == "events.csv"
    assert up.json()["file"].endswith(f"/v2/data_files/{did}/content/")
    got = client.get(f"/v2/data_files/{did}/content/", headers=auth("alice"))
    assert got.content == b"event_id\n1\n" and "events.csv" in got.headers["content-disposition"]
    # replacing the content removes the old file
    first = up.json()["stored"]
    client.post(f"/v2/data_files/{did}/content/", files={"file": ("e2.csv", b"x\n")}, headers=auth("alice"))
    assert client.get(f"/v2/data_files/{did}/content/", headers=auth("alice")).content == b"x\n"
    assert first not in {p.name for p in Path(client.app.state.perilflow_settings.storage_url.removeprefix(
        "file://")).rglob("*")}
    # groups: bob (not in team-a) sees nothing and may change nothing
    assert client.get(f"/v2/data_files/{did}/", headers=auth("bob")).status_code == 404
    assert client.get("/v2/data_files/", headers=auth("bob")).json() == []
    assert client.patch(f"/v2/data_files/{did}/", json={"file_description": "x"}, headers=auth("bob")).status_code \
        == 403
    assert client.post(f"/v2/data_files/{did}/content/", files={"file": ("e.csv", b"x")},
                       headers=auth("bob")).status_code == 403
    # filters, PATCH, PUT, 422
    assert [x["id"] for x in client.get("/v2/data_files/?file_description__contains=ven",
                                        headers=auth("alice")).json()] == [did]
    patched = client.patch(f"/v2/data_files/{did}/", json={"file_category": "other"}, headers=auth("alice")).json()
    assert patched["file_category"] == "other" and patched["file_description"] == "events"
    put = client.put(f"/v2/data_files/{did}/", json={"file_description": "ev2", "groups": []}, headers=auth("alice"))
    assert put.json()["file_category"] is None and put.json()["groups"] == []
    assert client.post("/v2/data_files/", json={"file_description": ""}, headers=auth("alice")).status_code == 422
    assert client.post("/v2/data_files/", json={"file_description": "x", "groups": ["other"]},
                       headers=auth("alice")).status_code == 400
    # upload limit (1 MiB in the tests)
    big = client.post(f"/v2/data_files/{did}/content/", files={"file": ("big.bin", b"0" * (1 << 20 + 1))},
                      headers=auth("alice"))
    assert big.status_code == 413
    assert client.delete(f"/v2/data_files/{did}/content/", headers=auth("alice")).status_code == 204
    assert client.delete(f"/v2/data_files/{did}/content/", headers=auth("alice")).status_code == 404
    assert client.delete(f"/v2/data_files/{did}/", headers=auth("alice")).status_code == 204
    assert client.get(f"/v2/data_files/{did}/", headers=auth("alice")).status_code == 404
    assert client.get("/v2/data_files/").status_code == 401
