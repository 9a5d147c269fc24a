"""The DAG ``perilflow_algorithm_task``: a real algorithm run with ``dag.test()`` (local backend), and its pod spec.

The algorithm is a Python script that counts the rows of every input CSV and writes a
summary; the pod specs for the Kubernetes backend (with and without a GPU) are checked
against the Kubernetes OpenAPI schema with kubernetes-validate.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import tests.operators.conftest  # noqa: F401 - the isolated AIRFLOW_HOME, before Airflow reads its config
from perilflow.operators.algorithms import (
    ALGORITHM_TASK,
    GPU_RESOURCE,
    MANIFEST_KEY,
    RUN_TASK,
    AlgorithmOperator,
    algorithm_task_dag,
    configure_algorithm_pod,
    task_folder,
)
from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import WORK_MOUNT
from tests.operators.test_pod_spec import DB_SECRET, assert_valid, serialize

#: counts the data rows of each input CSV, writes output/summary.csv and output/detail/<n>.txt
COUNT_ROWS = """
import csv, os, pathlib, sys
rows = {}
for path in sorted(pathlib.Path("input").rglob("*.csv")):
    with path.open() as handle:
        rows[path.relative_to("input").as_posix()] = sum(1 for _ in csv.reader(handle)) - 1
out = pathlib.Path("output")
(out / "detail").mkdir(parents=True, exist_ok=True)
with (out / "summary.csv").open("w") as handle:
    handle.write("file,rows\\n")
    for name, n in rows.items():
        handle.write(f"{name},{n}\\n")
(out / "detail" / "total.txt").write_text(str(sum(rows.values())))
print("counted", len(rows), "files,", sum(rows.values()), "rows; greeting", os.environ["GREETING"])
print("a warning on stderr", file=sys.stderr)
"""
FAILING = "import sys; print('reading input'); print('boom: no such column LocNumber', file=sys.stderr); sys.exit(3)"


def count_rows_algorithm(**extra) -> dict:
    return {"id": 1, "name": "count rows", "image": "python:3.11-slim", "command": ["python", "-c", COUNT_ROWS],
            "env": {"GREETING": "hello"}, **extra}


def input_files(tmp_path: Path) -> list[dict]:
    folder = tmp_path / "dataset"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (folder / "sub" / "b.csv").write_text("z\n7\n")
    return [{"name": "a.csv", "uri": f"file://{folder / 'a.csv'}"},
            {"name": "sub/b.csv", "uri": f"file://{folder / 'sub' / 'b.csv'}"}]


def run(conf: dict):
    dr = algorithm_task_dag().test(run_conf=conf)
    (ti,) = dr.get_task_instances()
    return dr, ti


def storage(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


@pytest.mark.integration
def test_a_script_counting_rows_runs_end_to_end(airflow_db, tmp_path) -> None:
    conf = {"task_id": 5, "run_uuid": "ab12cd34ef56ab12", "algorithm": count_rows_algorithm(),
            "input_files": input_files(tmp_path)}
    dr, ti = run(conf)
    assert dr.state == "success" and ti.task_id == RUN_TASK and ti.try_number == 1
    manifest = ti.xcom_pull(task_ids=RUN_TASK, key=MANIFEST_KEY)
    folder = task_folder(PlatformConfig.from_env().storage_url, 5, "ab12cd34ef56ab12")
    assert manifest["folder"] == folder and manifest["exit_code"] == 0
    assert [f["name"] for f in manifest["files"]] == ["detail/total.txt", "summary.csv"]
    summary = storage(f"{folder}/output/summary.csv").read_text()
    assert summary == "file,rows\na.csv,3\nsub/b.csv,1\n"
    assert storage(f"{folder}/output/detail/total.txt").read_text() == "4"
    assert manifest["size"] == len(summary) + 1
    log = storage(manifest["output_log"]).read_text()
    assert "counted 2 files, 4 rows; greeting hello" in log and "a warning on stderr" in log
    assert json.loads(storage(f"{folder}/manifest.json").read_text()) == manifest


@pytest.mark.integration
def test_a_failing_command_fails_at_once_with_its_stderr_in_the_log(airflow_db, tmp_path) -> None:
    conf = {"task_id": 6, "run_uuid": "0123456789abcdef", "input_files": input_files(tmp_path),
            "algorithm": {"command": ["python", "-c", FAILING]}}
    dr, ti = run(conf)
    assert dr.state == "failed" and ti.state == "failed" and ti.try_number == 1  # no retries
    folder = storage(task_folder(PlatformConfig.from_env().storage_url, 6, "0123456789abcdef"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["exit_code"] == 3 and manifest["files"] == []
    # stdout is buffered in a pipe, stderr is not: both lines are there, in either order
    assert sorted((folder / "output.log").read_text().splitlines()) == ["boom: no such column LocNumber",
                                                                         "reading input"]


@pytest.mark.integration
def test_a_missing_command_or_input_fails_with_a_clear_message(airflow_db, tmp_path) -> None:
    dr, _ = run({"task_id": 7, "run_uuid": "1111111122222222", "algorithm": {"command": ["no-such-program-xyz"]}})
    assert dr.state == "failed"
    folder = storage(task_folder(PlatformConfig.from_env().storage_url, 7, "1111111122222222"))
    assert "no-such-program-xyz: not found on PATH" in (folder / "output.log").read_text()
    assert json.loads((folder / "manifest.json").read_text())["exit_code"] == 127
    dr, _ = run({"task_id": 8, "algorithm": {"command": ["true"]},
                 "input_files": [{"name": "../escape.csv", "uri": f"file://{tmp_path}/x.csv"}]})
    assert dr.state == "failed"


def _context(task_id: int = 9) -> dict:
    from types import SimpleNamespace

    from tests.operators.test_pod_spec import context_for

    ctx = context_for(RUN_TASK, dag_id=ALGORITHM_TASK)
    ctx["dag_run"] = SimpleNamespace(conf={"task_id": task_id, "run_uuid": "feedfeedfeedfeed",
                                           "algorithm": {"command": [sys.executable, "-c",
                                                                     "import time; print('started', flush=True); "
                                                                     "time.sleep(120)"]}})
    return ctx


def test_on_kill_stops_the_algorithm_and_keeps_its_log(airflow_db) -> None:
    """What a cancel does to a running task: Airflow calls on_kill; no process is left, the log is kept."""
    op = AlgorithmOperator()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            op.execute(_context())
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 30
    while (op._runner is None or op._runner.process is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert op._runner is not None and op._runner.process is not None
    pid = op._runner.process.pid
    time.sleep(0.5)
    started = time.monotonic()
    op.on_kill()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert errors and "exit code -15" in str(errors[0])
    folder = storage(task_folder(PlatformConfig.from_env().storage_url, 9, "feedfeedfeedfeed"))
    assert "started" in (folder / "output.log").read_text()


# ----------------------------------------------------------------------------- Kubernetes pod spec


@pytest.fixture
def platform_env(monkeypatch):
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"postgresql://airflow:{DB_SECRET}@db:5432/airflow")
    monkeypatch.setenv("PERILFLOW_DATABASE_URL", f"postgresql://perilflow:{DB_SECRET}@db:5432/perilflow")
    monkeypatch.setenv("PERILFLOW_NAMESPACE", "perilflow-algorithms")
    monkeypatch.setenv("PERILFLOW_WORKER_IMAGE", "registry.example.com/perilflow/model-worker:0.1.0")
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", "s3://bucket/perilflow")


def k8s_pod(algorithm: dict, files: list[dict] | None = None) -> dict:
    op = AlgorithmOperator()
    conf = {"task_id": 42, "algorithm": algorithm, "input_files": files or []}
    configure_algorithm_pod(op, PlatformConfig.from_env(), conf, "s3://bucket/perilflow/algorithm-tasks/task-42-ab",
                            "kubernetes", {"perilflow/algorithm-task": "42"})
    return serialize(op.build_pod_request_obj(dry_run=True))


def test_kubernetes_pod_spec_is_valid_and_complete(platform_env) -> None:
    algorithm = count_rows_algorithm(entrypoint=["/usr/bin/env"], node_selector={"pool": "cpu"},
                                     resources={"requests": {"cpu": "2", "memory": "2Gi"},
                                                "limits": {"memory": "3Gi"}})
    doc = k8s_pod(algorithm, [{"name": "a.csv", "uri": "s3://bucket/perilflow/datasets/1/a.csv"}])
    assert_valid(doc)
    spec = doc["spec"]
    (base,) = spec["containers"]
    assert base["image"] == "python:3.11-slim" and base["workingDir"] == WORK_MOUNT
    assert base["command"][:2] == ["/bin/sh", "-c"] and base["args"] == ["/usr/bin/env", "python", "-c", COUNT_ROWS]
    assert base["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "3Gi"}}
    env = {e["name"]: e["value"] for e in base["env"]}
    assert env["GREETING"] == "hello" and env["INPUT_DIR"] == f"{WORK_MOUNT}/input"
    assert not base.get("envFrom")  # the algorithm gets no storage credentials
    stage, collect = spec["initContainers"]
    assert stage["name"] == "stage" and "restartPolicy" not in stage
    assert collect["name"] == "collect" and collect["restartPolicy"] == "Always"  # native sidecar
    for step in (stage, collect):
        assert step["image"] == "registry.example.com/perilflow/model-worker:0.1.0"
        assert step["envFrom"] == [{"secretRef": {"name": "perilflow-storage"}}]
        assert step["command"][:3] == ["python", "-m", "perilflow.kernel.datasets"]
    assert json.loads(stage["command"][-1])["files"][0]["name"] == "a.csv"
    assert json.loads(collect["command"][-1]) == {"folder": "s3://bucket/perilflow/algorithm-tasks/task-42-ab",
                                                  "wait": True}
    assert {"name": "PERILFLOW_WORK_DIR", "value": WORK_MOUNT} in collect["env"]
    assert spec["nodeSelector"] == {"pool": "cpu"} and not spec.get("tolerations")
    assert spec["automountServiceAccountToken"] is False and spec["terminationGracePeriodSeconds"] == 600
    assert doc["metadata"]["namespace"] == "perilflow-algorithms"
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "perilflow-algorithm"
    assert DB_SECRET not in json.dumps(doc)


def test_kubernetes_pod_spec_with_a_gpu(platform_env) -> None:
    doc = k8s_pod(count_rows_algorithm(gpu=True, resources={"limits": {"memory": "8Gi"}}))
    assert_valid(doc)
    (base,) = doc["spec"]["containers"]
    assert base["resources"]["limits"] == {"memory": "8Gi", GPU_RESOURCE: "1"}
    assert GPU_RESOURCE not in base["resources"]["requests"]
    assert doc["spec"]["tolerations"] == [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def test_the_wrapper_keeps_the_exit_code_and_the_output(tmp_path) -> None:
    """The /bin/sh wrapper of a pod's algorithm container, run here: exit code and log for the collector."""
    import subprocess

    from perilflow.operators.algorithms import WRAPPER

    done = subprocess.run(["/bin/sh", "-c", WRAPPER, "algorithm", sys.executable, "-c",
                           "import sys; print('out'); print('err', file=sys.stderr); sys.exit(4)"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 4 and "out" in done.stdout
    assert (tmp_path / ".perilflow" / "exit_code").read_text() == "4\n"
    assert sorted((tmp_path / ".perilflow" / "output.log").read_text().split()) == ["err", "out"]
    assert (tmp_path / "output").is_dir()


def test_dag_is_declared(airflow_db) -> None:
    dag = algorithm_task_dag()
    assert dag.dag_id == ALGORITHM_TASK and list(dag.task_dict) == [RUN_TASK]
    assert dag.task_dict[RUN_TASK].retries == 0


# ----------------------------------------------------------------------------- through the API


@pytest.mark.integration
def test_api_to_dag_to_api_end_to_end(airflow_db, tmp_path) -> None:
    """Register, upload, run through the REST API; the triggered conf runs in dag.test(); the API reads the outcome.

    The fake gateway stands in for Airflow's trigger and reads: it hands the API's conf to the
    real DAG and reports that run's state and task instance back.
    """
    import os

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from perilflow.plugins.api.app import create_app
    from perilflow.plugins.api.gateway import FakeGateway, RunInfo, TaskInstanceInfo
    from perilflow.plugins.db.migrate import migrate
    from perilflow.plugins.settings import ApiSettings
    from tests.plugins.conftest import auth, fake_get_user

    url = migrate(f"sqlite:///{tmp_path / 'product.db'}")
    settings = ApiSettings(database_url=url, storage_url=os.environ["PERILFLOW_STORAGE_URL"], max_upload_mb=1,
                           airflow_url="http://127.0.0.1:9")
    gateway = FakeGateway()
    app = create_app(settings, gateway)
    app.dependency_overrides[get_user] = fake_get_user
    client = TestClient(app)

    def run_triggered() -> None:
        dag_id, run_id, conf, _ = gateway.triggered[-1]
        dr, ti = run(conf)
        gateway.runs[(dag_id, run_id)] = RunInfo(str(dr.state), dr.start_date, dr.end_date)
        gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo(ti.task_id, ti.map_index, str(ti.state), ti.try_number,
                                                          start_date=ti.start_date, end_date=ti.end_date)]

    dataset = client.post("/v2/datasets/", json={"name": "inputs"}, headers=auth("alice")).json()
    client.post(f"/v2/datasets/{dataset['id']}/files/", headers=auth("alice"),
                files=[("files", ("a.csv", b"x,y\n1,2\n3,4\n5,6\n")), ("files", ("sub/b.csv", b"z\n7\n"))])
    counting = client.post("/v2/algorithms/", json={"name": "count rows", "command": ["python", "-c", COUNT_ROWS],
                                                    "environment": {"GREETING": "hi"}}, headers=auth("alice")).json()
    failing = client.post("/v2/algorithms/", json={"name": "fails", "command": ["python", "-c", FAILING]},
                          headers=auth("alice")).json()

    ok = client.post("/v2/algorithm-tasks/", json={"name": "count", "algorithm": counting["id"],
                                                   "input_dataset": dataset["id"]}, headers=auth("alice")).json()
    assert client.post(f"/v2/algorithm-tasks/{ok['id']}/run/", headers=auth("alice")).json()["status"] == "QUEUED"
    run_triggered()
    task = client.get(f"/v2/algorithm-tasks/{ok['id']}/", headers=auth("alice")).json()
    assert task["status"] == "SUCCEEDED" and task["exit_code"] == 0, task
    assert task["timing"]["run_seconds"] is not None and task["timing"]["run_seconds"] >= 0
    log = client.get(f"/v2/algorithm-tasks/{ok['id']}/output_log/", headers=auth("alice")).text
    assert "counted 2 files, 4 rows; greeting hi" in log and "a warning on stderr" in log
    out = client.get(f"/v2/algorithm-tasks/{ok['id']}/output_dataset/", headers=auth("alice")).json()
    files = {f["name"]: f for f in out["files"]}
    assert sorted(files) == ["detail/total.txt", "summary.csv"]
    summary = client.get(f"/v2/datasets/{out['id']}/files/{files['summary.csv']['id']}/", headers=auth("alice"))
    assert summary.text == "file,rows\na.csv,3\nsub/b.csv,1\n"
    import io
    import tarfile

    tar = client.get(f"/v2/datasets/{out['id']}/download/", headers=auth("alice"))
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        assert archive.extractfile("detail/total.txt").read() == b"4"

    bad = client.post("/v2/algorithm-tasks/", json={"name": "fail", "algorithm": failing["id"],
                                                    "input_dataset": dataset["id"]}, headers=auth("alice")).json()
    client.post(f"/v2/algorithm-tasks/{bad['id']}/run/", headers=auth("alice"))
    run_triggered()
    status = client.get(f"/v2/algorithm-tasks/{bad['id']}/status/", headers=auth("alice")).json()
    assert status["status"] == "FAILED" and status["exit_code"] == 3
    log = client.get(f"/v2/algorithm-tasks/{bad['id']}/output_log/", headers=auth("alice")).text
    assert "boom: no such column LocNumber" in log
    assert client.get(f"/v2/algorithm-tasks/{bad['id']}/output_dataset/", headers=auth("alice")).status_code == 404
    app.state.perilflow_engine.dispose()
