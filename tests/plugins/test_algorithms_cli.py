"""``perilflow algorithms register|run|status|logs|download`` against the API app (in-process, fake gateway)."""

from __future__ import annotations

import json
import tarfile

import pytest
from fastapi.testclient import TestClient

from perilflow import cli_algorithms
from perilflow.cli import main
from perilflow.client import PerilflowClient
from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.api.routes.algorithms import ALGORITHM_TASK, RUN_TASK
from tests.plugins.test_algorithms import _write_run_outputs


@pytest.fixture
def cli(app, monkeypatch, capsys):
    """Run ``perilflow ...`` with its HTTP client talking to the app in-process as alice; returns (code, stdout)."""

    def make(args):
        client = PerilflowClient("http://testserver", token="alice")
        client._http = TestClient(app, base_url="http://testserver/")
        return client

    monkeypatch.setattr(cli_algorithms, "_client", make)

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out + (captured.err if code else "")

    return run


def test_register_run_status_logs_download(cli, gateway, settings, tmp_path, monkeypatch) -> None:
    code, out = cli("algorithms", "register", "--name", "count", "--image", "python:3.11-slim", "--env", "A=1",
                    "--gpu", "--memory-limit", "2Gi", "--", "python", "count.py", "--fast")
    assert code == 0, out
    algorithm = json.loads(out)
    assert algorithm["command"] == ["python", "count.py", "--fast"] and algorithm["image"] == "python:3.11-slim"
    assert algorithm["environment"] == {"A": "1"} and algorithm["gpu"] is True
    assert algorithm["resources"] == {"limits": {"memory": "2Gi"}}
    # the same image reference is found, not registered twice
    code, out = cli("algorithms", "register", "--name", "count", "--image", "python:3.11-slim", "--", "python", "x")
    assert json.loads(out)["docker_image"] == algorithm["docker_image"]

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x\n1\n")
    (data / "sub" / "b.csv").write_text("y\n2\n")
    code, out = cli("algorithms", "run", str(algorithm["id"]), "--input", str(data))
    assert code == 0, out
    task = json.loads(out)
    assert task["status"] == "QUEUED"
    _, run_id, conf, _ = gateway.triggered[-1]
    assert [f["name"] for f in conf["input_files"]] == ["a.csv", "sub/b.csv"]

    code, out = cli("algorithms", "status", str(task["id"]))
    assert out.strip() == f"{task['id']}  QUEUED"
    _write_run_outputs(settings, task["id"], conf["run_uuid"], 0, "counted 2 files\n", {"summary.csv": b"f,n\n"})
    gateway.runs[(ALGORITHM_TASK, run_id)] = RunInfo("success")
    gateway.tis[(ALGORITHM_TASK, run_id)] = [TaskInstanceInfo(RUN_TASK, -1, "success", 1)]
    code, out = cli("algorithms", "status", str(task["id"]))
    assert out.startswith(f"{task['id']}  SUCCEEDED  exit code 0") and "output dataset" in out
    assert cli("algorithms", "logs", str(task["id"])) == (0, "counted 2 files\n")
    target = tmp_path / "out.tar.gz"
    code, out = cli("algorithms", "download", str(task["id"]), "-o", str(target))
    assert code == 0 and out.strip() == str(target)
    with tarfile.open(target) as archive:
        assert archive.extractfile("summary.csv").read() == b"f,n\n"


def test_run_wait_exits_3_when_the_task_fails(cli, gateway, settings, tmp_path, monkeypatch) -> None:
    code, out = cli("algorithms", "register", "--name", "fails", "--", "python", "-c", "raise SystemExit(1)")
    algorithm_id = json.loads(out)["id"]
    (tmp_path / "a.csv").write_text("x\n")

    def finish(_seconds: float) -> None:  # while the CLI waits, the run fails
        _, run_id, conf, _ = gateway.triggered[-1]
        _write_run_outputs(settings, conf["task_id"], conf["run_uuid"], 1, "Traceback\nSystemExit: 1\n", {})
        gateway.runs[(ALGORITHM_TASK, run_id)] = RunInfo("failed")
        gateway.tis[(ALGORITHM_TASK, run_id)] = [TaskInstanceInfo(RUN_TASK, -1, "failed", 1)]

    monkeypatch.setattr(cli_algorithms.time, "sleep", finish)
    code, out = cli("algorithms", "run", str(algorithm_id), "--input", str(tmp_path / "a.csv"), "--wait", "--quiet")
    assert code == cli_algorithms.EXIT_TASK_FAILED
    assert json.loads(out.split("perilflow algorithms")[0])["status"] == "FAILED"


def test_cli_errors_name_the_problem(cli, tmp_path) -> None:
    code, out = cli("algorithms", "register", "--name", "x")
    assert code == 2 and "no command" in out
    code, out = cli("algorithms", "register", "--name", "x", "--env", "novalue", "--", "true")
    assert code == 2 and "NAME=VALUE" in out
    code, out = cli("algorithms", "run", "999", "--input", str(tmp_path))
    assert code == 1 and "404" in out
    code, out = cli("algorithms", "logs", "999")
    assert code == 1 and "algorithm task 999 not found" in out
