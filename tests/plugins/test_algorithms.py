"""``/v2/docker-images/``, ``/v2/algorithms/``, ``/v2/datasets/``, ``/v2/algorithm-tasks/`` on the fake gateway.

The run itself (the DAG on the local backend, driven through this API) is tested in
tests/operators/test_algorithm_dag.py; here the DAG run's states are set by hand and the
run's manifest and log are written where the collector writes them.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from perilflow.kernel.datasets import task_folder
from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.api.routes.algorithms import ALGORITHM_TASK, RUN_TASK
from tests.plugins.conftest import auth


def _storage(settings, uri: str) -> Path:
    assert uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


@pytest.fixture
def algorithm(client) -> dict:
    image = client.post("/v2/docker-images/", json={"name": "python", "image": "python:3.11-slim"},
                        headers=auth("alice"))
    assert image.status_code == 201, image.text
    created = client.post("/v2/algorithms/", json={
        "name": "count rows", "docker_image": image.json()["id"], "command": ["python", "count.py"],
        "environment": {"K": "V"}, "gpu": True, "resources": {"limits": {"memory": "2Gi", "cpu": 2}}},
        headers=auth("alice"))
    assert created.status_code == 201, created.text
    return created.json()


@pytest.fixture
def dataset(client) -> dict:
    d = client.post("/v2/datasets/", json={"name": "exposure"}, headers=auth("alice")).json()
    up = client.post(f"/v2/datasets/{d['id']}/files/", headers=auth("alice"),
                     files=[("files", ("a.csv", b"x\n1\n2\n", "text/csv")),
                            ("files", ("sub/b.csv", b"y\n3\n", "text/csv"))])
    assert up.status_code == 200, up.text
    return up.json()


def test_docker_images_crud_and_image_file(client, add_member) -> None:
    add_member("alice", "team-a")
    img = client.post("/v2/docker-images/", json={"name": "algo", "image": "reg.example.com/algo:1"},
                      headers=auth("alice")).json()
    assert img["groups"] == ["team-a"] and img["image_file"] is None
    iid = img["id"]
    assert client.get(f"/v2/docker-images/{iid}/image_file/", headers=auth("alice")).status_code == 404
    up = client.post(f"/v2/docker-images/{iid}/image_file/", files={"file": ("algo.tar", b"tarball", "x")},
                     headers=auth("alice"))
    assert up.status_code == 200 and up.json()["image_file"].endswith(f"/v2/docker-images/{iid}/image_file/")
    assert client.get(f"/v2/docker-images/{iid}/image_file/", headers=auth("alice")).content == b"tarball"
    assert client.get(f"/v2/docker-images/{iid}/", headers=auth("bob")).status_code == 404
    assert client.patch(f"/v2/docker-images/{iid}/", json={"name": "x"}, headers=auth("bob")).status_code == 403
    patched = client.patch(f"/v2/docker-images/{iid}/", json={"image": None, "description": "d"},
                           headers=auth("alice")).json()
    assert patched["image"] is None and patched["description"] == "d" and patched["name"] == "algo"
    assert [i["id"] for i in client.get("/v2/docker-images/?name=algo", headers=auth("alice")).json()] == [iid]
    assert client.post("/v2/docker-images/", json={"name": ""}, headers=auth("alice")).status_code == 422
    assert client.delete(f"/v2/docker-images/{iid}/", headers=auth("alice")).status_code == 204
    assert client.get("/v2/docker-images/", headers=auth("alice")).json() == []
    assert client.get("/v2/docker-images/").status_code == 401


def test_algorithms_crud_and_validation(client, algorithm) -> None:
    aid = algorithm["id"]
    assert algorithm["command"] == ["python", "count.py"] and algorithm["image"] == "python:3.11-slim"
    assert algorithm["gpu"] is True and algorithm["resources"] == {"limits": {"memory": "2Gi", "cpu": "2"}}
    bad = client.post("/v2/algorithms/", json={"name": "x", "command": []}, headers=auth("alice"))
    assert bad.status_code == 422 and "command" in bad.json()
    missing = client.post("/v2/algorithms/", json={"name": "x", "command": ["a"], "docker_image": 999},
                          headers=auth("alice"))
    assert missing.status_code == 400 and "docker_image" in missing.json()
    extra = client.post("/v2/algorithms/", json={"name": "x", "command": ["a"], "resources": {"cpus": 2}},
                        headers=auth("alice"))
    assert extra.status_code == 422
    patched = client.patch(f"/v2/algorithms/{aid}/", json={"entrypoint": ["/usr/bin/env"], "gpu": False},
                           headers=auth("alice")).json()
    assert patched["entrypoint"] == ["/usr/bin/env"] and patched["gpu"] is False and patched["command"][0] == "python"
    # the image is in use
    reply = client.delete(f"/v2/docker-images/{algorithm['docker_image']}/", headers=auth("alice"))
    assert reply.status_code == 409 and f"algorithm {aid}" in reply.json()["detail"]
    assert client.get(f"/v2/algorithms/{aid}/", headers=auth("carol")).status_code == 200  # ungrouped
    assert client.delete(f"/v2/algorithms/{aid}/", headers=auth("alice")).status_code == 204


def test_datasets_upload_list_download(client, dataset, settings) -> None:
    did = dataset["id"]
    assert [f["name"] for f in dataset["files"]] == ["a.csv", "sub/b.csv"]
    assert dataset["file_count"] == 2 and dataset["size"] == len(b"x\n1\n2\n") + len(b"y\n3\n")
    by_name = {f["name"]: f for f in dataset["files"]}
    got = client.get(f"/v2/datasets/{did}/files/{by_name['sub/b.csv']['id']}/", headers=auth("alice"))
    assert got.content == b"y\n3\n" and 'filename="b.csv"' in got.headers["content-disposition"]
    # re-uploading a name replaces the file; '..' and absolute parts are dropped from names
    client.post(f"/v2/datasets/{did}/files/", files=[("files", ("a.csv", b"x\n9\n", "text/csv")),
                                                      ("files", ("../../etc/c.csv", b"c\n", "text/csv"))],
                headers=auth("alice"))
    files = client.get(f"/v2/datasets/{did}/files/", headers=auth("alice")).json()
    assert [f["name"] for f in files] == ["a.csv", "etc/c.csv", "sub/b.csv"]
    root = _storage(settings, settings.storage_url)
    assert (root / f"datasets/{did}/files/a.csv").read_bytes() == b"x\n9\n"
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    # all files as a tarball
    tar = client.get(f"/v2/datasets/{did}/download/", headers=auth("alice"))
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        assert {m.name: archive.extractfile(m).read() for m in archive.getmembers()} == {
            "a.csv": b"x\n9\n", "etc/c.csv": b"c\n", "sub/b.csv": b"y\n3\n"}
    # delete one file, then the dataset
    c_id = next(f["id"] for f in files if f["name"] == "etc/c.csv")
    assert client.delete(f"/v2/datasets/{did}/files/{c_id}/", headers=auth("alice")).status_code == 204
    assert not (root / f"datasets/{did}/files/etc/c.csv").exists()
    assert client.get(f"/v2/datasets/{did}/files/{c_id}/", headers=auth("alice")).status_code == 404
    assert [d["id"] for d in client.get("/v2/datasets/?name__contains=expo", headers=auth("alice")).json()] == [did]
    assert client.delete(f"/v2/datasets/{did}/", headers=auth("alice")).status_code == 204
    assert not (root / f"datasets/{did}/files/a.csv").exists()


def test_dataset_upload_limit_and_groups(client, add_member, settings) -> None:
    add_member("alice", "team-a")
    did = client.post("/v2/datasets/", json={"name": "private"}, headers=auth("alice")).json()["id"]
    big = client.post(f"/v2/datasets/{did}/files/", files=[("files", ("big.bin", b"0" * ((1 << 20) + 1)))],
                      headers=auth("alice"))
    assert big.status_code == 413 and "PERILFLOW_MAX_UPLOAD_MB" in big.json()["detail"]
    root = _storage(settings, settings.storage_url)
    assert not [p for p in root.rglob("*") if p.is_file()]  # nothing half-written is left
    assert client.get(f"/v2/datasets/{did}/", headers=auth("bob")).status_code == 404
    assert client.get("/v2/datasets/", headers=auth("bob")).json() == []
    assert client.post(f"/v2/datasets/{did}/files/", files=[("files", ("a.csv", b"a"))],
                       headers=auth("bob")).status_code == 403
    assert client.post("/v2/datasets/", json={"name": "x", "groups": ["other"]}, headers=auth("alice")).status_code \
        == 400


def _write_run_outputs(settings, task_id: int, run_uuid: str, exit_code: int, log: str,
                       outputs: dict[str, bytes]) -> str:
    """What the collector leaves in storage at the end of a run."""
    folder = task_folder(settings.storage_url, task_id, run_uuid)
    root = _storage(settings, folder)
    root.mkdir(parents=True, exist_ok=True)
    listed = []
    for name, data in outputs.items():
        (root / "output" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "output" / name).write_bytes(data)
        listed.append({"name": name, "uri": f"{folder}/output/{name}", "size": len(data), "content_type": "text/csv"})
    (root / "output.log").write_text(log)
    manifest = {"folder": folder, "files": listed, "size": sum(f["size"] for f in listed), "exit_code": exit_code,
                "output_log": f"{folder}/output.log"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _run(client, gateway, algorithm, dataset, name="count") -> tuple[int, str, dict]:
    tid = client.post("/v2/algorithm-tasks/", json={"name": name, "algorithm": algorithm["id"],
                                                    "input_dataset": dataset["id"]}, headers=auth("alice")).json()["id"]
    assert client.get(f"/v2/algorithm-tasks/{tid}/status/", headers=auth("alice")).json()["status"] == "CREATED"
    reply = client.post(f"/v2/algorithm-tasks/{tid}/run/", headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "QUEUED" and reply.json()["timing"]["queued"] is not None
    dag_id, run_id, conf, user = gateway.triggered[-1]
    assert dag_id == ALGORITHM_TASK and user == "alice" and run_id.startswith(f"algorithm-task-{tid}-run-")
    return tid, run_id, conf


def test_run_conf_is_what_the_dag_accepts(client, gateway, algorithm, dataset) -> None:
    from perilflow.operators.algorithms import ALGORITHM_TASK as DAG_ID
    from perilflow.operators.algorithms import RUN_TASK as TASK
    from perilflow.operators.algorithms import check_conf

    assert (DAG_ID, TASK) == (ALGORITHM_TASK, RUN_TASK)
    tid, _, conf = _run(client, gateway, algorithm, dataset)
    checked = check_conf(conf)
    assert checked["task_id"] == tid and checked["algorithm"]["image"] == "python:3.11-slim"
    assert checked["algorithm"]["gpu"] is True and checked["algorithm"]["env"] == {"K": "V"}
    assert [f["name"] for f in conf["input_files"]] == ["a.csv", "sub/b.csv"]
    assert all(f["uri"].startswith("file://") for f in conf["input_files"])


def test_status_follows_the_dag_run_to_succeeded_with_an_output_dataset(client, gateway, settings, algorithm,
                                                                        dataset) -> None:
    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    key = (ALGORITHM_TASK, run_id)
    gateway.runs[key] = RunInfo("running")
    gateway.tis[key] = [TaskInstanceInfo(RUN_TASK, -1, "queued", 0)]
    assert client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).json()["status"] == "QUEUED"
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    gateway.tis[key] = [TaskInstanceInfo(RUN_TASK, -1, "running", 1, start_date=t0)]
    assert client.get(f"/v2/algorithm-tasks/{tid}/status/", headers=auth("alice")).json()["status"] == "RUNNING"
    assert client.get(f"/v2/algorithm-tasks/{tid}/output_dataset/", headers=auth("alice")).status_code == 404
    _write_run_outputs(settings, tid, conf["run_uuid"], 0, "counted 2 files\n", {"summary.csv": b"file,rows\n"})
    gateway.runs[key] = RunInfo("success", end_date=t0 + timedelta(seconds=5))
    gateway.tis[key] = [TaskInstanceInfo(RUN_TASK, -1, "success", 1, start_date=t0,
                                         end_date=t0 + timedelta(seconds=4))]
    task = client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).json()
    assert task["status"] == "SUCCEEDED" and task["exit_code"] == 0 and task["output_dataset"] is not None
    assert client.get(f"/v2/algorithm-tasks/{tid}/output_log/", headers=auth("alice")).text == "counted 2 files\n"
    timing = client.get(f"/v2/algorithm-tasks/{tid}/timing/", headers=auth("alice")).json()
    assert timing["run_seconds"] == 4.0 and timing["started"].startswith("2026-12-01T10:00:00")
    out = client.get(f"/v2/algorithm-tasks/{tid}/output_dataset/", headers=auth("alice")).json()
    assert out["source_task"] == tid and [f["name"] for f in out["files"]] == ["summary.csv"]
    got = client.get(f"/v2/datasets/{out['id']}/files/{out['files'][0]['id']}/", headers=auth("alice"))
    assert got.content == b"file,rows\n"
    # an output dataset cannot change; reading again does not create a second one
    assert client.post(f"/v2/datasets/{out['id']}/files/", files=[("files", ("x.csv", b"x"))],
                       headers=auth("alice")).status_code == 409
    assert len(client.get("/v2/datasets/", headers=auth("alice")).json()) == 2
    # a rerun: QUEUED again, the previous output stays a dataset
    assert client.post(f"/v2/algorithm-tasks/{tid}/run/", headers=auth("alice")).json()["output_dataset"] is None
    assert client.post(f"/v2/algorithm-tasks/{tid}/run/", headers=auth("alice")).status_code == 409
    assert client.delete(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).status_code == 409
    assert client.get(f"/v2/datasets/{out['id']}/", headers=auth("alice")).status_code == 200


def test_a_failed_run_is_failed_with_its_log(client, gateway, settings, algorithm, dataset) -> None:
    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    _write_run_outputs(settings, tid, conf["run_uuid"], 3, "reading\nboom: no such column\n", {})
    gateway.runs[(ALGORITHM_TASK, run_id)] = RunInfo("failed")
    gateway.tis[(ALGORITHM_TASK, run_id)] = [TaskInstanceInfo(RUN_TASK, -1, "failed", 1)]
    status = client.get(f"/v2/algorithm-tasks/{tid}/status/", headers=auth("alice")).json()
    assert status == {"id": tid, "status": "FAILED", "exit_code": 3,
                      "error": "the algorithm exited with code 3; see output_log/"}
    assert "boom: no such column" in client.get(f"/v2/algorithm-tasks/{tid}/output_log/", headers=auth("alice")).text
    assert client.get(f"/v2/algorithm-tasks/{tid}/output_dataset/", headers=auth("alice")).status_code == 404
    assert [t["id"] for t in client.get("/v2/algorithm-tasks/?status_filter=FAILED",
                                        headers=auth("alice")).json()] == [tid]


def test_cancel(client, gateway, settings, algorithm, dataset) -> None:
    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    gateway.runs[(ALGORITHM_TASK, run_id)] = RunInfo("running")
    gateway.tis[(ALGORITHM_TASK, run_id)] = [TaskInstanceInfo(RUN_TASK, -1, "running", 1)]
    gateway.fail_next = "Airflow is not answering"
    refused = client.post(f"/v2/algorithm-tasks/{tid}/cancel/", headers=auth("bob"))
    assert refused.status_code == 503 and "not answering" in refused.json()["detail"]
    assert client.get(f"/v2/algorithm-tasks/{tid}/status/", headers=auth("alice")).json()["status"] == "RUNNING"
    assert client.post(f"/v2/algorithm-tasks/{tid}/cancel/", headers=auth("bob")).status_code == 200  # ungrouped
    assert gateway.cancelled == [(ALGORITHM_TASK, run_id)]
    task = client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).json()
    assert task["status"] == "CANCELLED" and task["timing"]["finished"] is not None
    assert client.post(f"/v2/algorithm-tasks/{tid}/cancel/", headers=auth("alice")).status_code == 409
    # the collector uploads the killed algorithm's log after the cancel returned: the task picks it up
    assert client.get(f"/v2/algorithm-tasks/{tid}/output_log/", headers=auth("alice")).status_code == 404
    _write_run_outputs(settings, tid, conf["run_uuid"], -15, "row 1\nterminated\n", {})
    assert client.get(f"/v2/algorithm-tasks/{tid}/output_log/", headers=auth("alice")).text == "row 1\nterminated\n"
    assert client.get(f"/v2/algorithm-tasks/{tid}/status/", headers=auth("alice")).json() == {
        "id": tid, "status": "CANCELLED", "exit_code": -15, "error": None}
    listed = client.get("/v2/algorithm-tasks/?status_filter=CANCELLED", headers=auth("alice")).json()
    assert [t["id"] for t in listed] == [tid] and listed[0]["output_log"] is not None
    # a dataset read by a running task cannot be deleted
    tid2, run2, _ = _run(client, gateway, algorithm, dataset, name="second")
    assert client.delete(f"/v2/datasets/{dataset['id']}/", headers=auth("alice")).status_code == 409
    # a run that failed with no failed task (cancelled through Airflow) is CANCELLED
    gateway.runs[(ALGORITHM_TASK, run2)] = RunInfo("failed")
    gateway.tis[(ALGORITHM_TASK, run2)] = [TaskInstanceInfo(RUN_TASK, -1, "skipped", 1)]
    assert client.get(f"/v2/algorithm-tasks/{tid2}/status/", headers=auth("alice")).json()["status"] == "CANCELLED"
    # a cancel skips the task before it fails the run; the scheduler may end the run as success in
    # between: that is CANCELLED too, with no output dataset
    tid3, run3, _ = _run(client, gateway, algorithm, dataset, name="third")
    gateway.runs[(ALGORITHM_TASK, run3)] = RunInfo("success")
    gateway.tis[(ALGORITHM_TASK, run3)] = [TaskInstanceInfo(RUN_TASK, -1, "skipped", 1)]
    task = client.get(f"/v2/algorithm-tasks/{tid3}/", headers=auth("alice")).json()
    assert task["status"] == "CANCELLED" and task["output_dataset"] is None, task


def test_task_errors_and_groups(client, gateway, add_member, algorithm, dataset) -> None:
    assert client.post("/v2/algorithm-tasks/", json={"name": "x", "algorithm": 999},
                       headers=auth("alice")).json() == {"algorithm": ["algorithm 999 not found; list them at "
                                                                       "/v2/algorithms/"]}
    assert "input_dataset" in client.post("/v2/algorithm-tasks/", json={"name": "x", "algorithm": algorithm["id"],
                                                                        "input_dataset": 999},
                                          headers=auth("alice")).json()
    add_member("alice", "team-a")
    tid = client.post("/v2/algorithm-tasks/", json={"name": "mine", "algorithm": algorithm["id"]},
                      headers=auth("alice")).json()["id"]
    assert client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("bob")).status_code == 404
    assert client.post(f"/v2/algorithm-tasks/{tid}/run/", headers=auth("bob")).status_code == 403
    assert client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("root")).status_code == 200  # admin
    gateway.fail_next = "DAG perilflow_algorithm_task is not known to Airflow yet"
    reply = client.post(f"/v2/algorithm-tasks/{tid}/run/", headers=auth("alice"))
    assert reply.status_code == 503 and "not known" in reply.json()["detail"]
    assert client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).json()["status"] == "CREATED"
    assert client.delete(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).status_code == 204


def test_listener_records_an_algorithm_task(app, client, gateway, settings, algorithm, dataset) -> None:
    from perilflow.plugins import listener

    tid, run_id, conf = _run(client, gateway, algorithm, dataset)
    _write_run_outputs(settings, tid, conf["run_uuid"], 0, "ok\n", {"out.csv": b"a\n"})
    gateway.tis[(ALGORITHM_TASK, run_id)] = [TaskInstanceInfo(RUN_TASK, -1, "success", 1)]
    maker = app.state.perilflow_sessionmaker
    assert listener.record(ALGORITHM_TASK, run_id, "success", settings=settings, sessionmaker=maker,
                           gateway=gateway) == "SUCCEEDED"
    assert listener.record(ALGORITHM_TASK, "other-run", "success", settings=settings, sessionmaker=maker,
                           gateway=gateway) is None
    task = client.get(f"/v2/algorithm-tasks/{tid}/", headers=auth("alice")).json()
    assert task["status"] == "SUCCEEDED" and task["output_dataset"] is not None
