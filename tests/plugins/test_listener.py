"""The plugin's Airflow listener records a run's outcome in the product DB with no client reading it."""
# ruff: noqa: F811 - the fixtures of test_analyses are imported by name and used as arguments

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from perilflow.plugins import listener
from perilflow.plugins.api.gateway import RunInfo, TaskInstanceInfo
from perilflow.plugins.db import make_sessionmaker
from perilflow.plugins.db.models import Analysis
from tests.plugins.conftest import auth
from tests.plugins.test_analyses import _analysis, _post, analysis_settings, piwind, setup  # noqa: F401 - fixtures

BOTH, INPUTS = "perilflow_generate_and_run", "perilflow_input_generation"


@pytest.fixture
def record(app, settings, gateway):
    """listener.record on the test's product DB and fake gateway."""
    sessions = make_sessionmaker(app.state.perilflow_engine)

    def call(dag_id: str, run_id: str, state: str, end_date=None):
        return listener.record(dag_id, run_id, state, end_date, settings=settings, sessionmaker=sessions,
                               gateway=gateway)

    call.status = lambda aid: sessions().scalar(select(Analysis.status).where(Analysis.id == aid))
    return call


def _start(client, setup, gateway, settings_json, action: str = "generate_and_run"):
    aid = _analysis(client, setup)["id"]
    client.post(f"/v2/analyses/{aid}/settings/", json=settings_json, headers=auth("alice"))
    assert _post(client, aid, action).status_code == 200
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    return aid, dag_id, run_id, conf


def test_success_is_recorded_with_the_files(client, setup, gateway, record, settings, analysis_settings) -> None:
    aid, dag_id, run_id, conf = _start(client, setup, gateway, analysis_settings)
    assert record(dag_id, run_id, "running") == "INPUTS_GENERATION_STARTED"
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1)]
    assert record(dag_id, run_id, "running") == "RUN_STARTED"
    gateway.xcoms[(dag_id, run_id, "record-losses-files")] = {"output_file": "file:///x/output.tar.gz"}
    end = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # the listener's state wins over what the gateway still reads (the new state is not committed yet)
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    assert record(dag_id, run_id, "success", end) == "RUN_COMPLETED"
    sessions = make_sessionmaker(client.app.state.perilflow_engine)
    with sessions() as db:
        analysis = db.get(Analysis, aid)
        assert analysis.output_file == "file:///x/output.tar.gz" and analysis.input_file.endswith("/input.tar.gz")
        assert analysis.task_finished.replace(tzinfo=UTC) == end
    # nothing is active any more: a client's read leaves it as recorded
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_COMPLETED"


def test_a_failed_run_without_failed_tasks_was_cancelled(client, setup, gateway, record, analysis_settings) -> None:
    aid, dag_id, run_id, _ = _start(client, setup, gateway, analysis_settings)
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 0, "skipped", 1),
                                     TaskInstanceInfo("generate-losses-output", -1, "upstream_failed", 0)]
    assert record(dag_id, run_id, "failed") == "RUN_CANCELLED"
    # a cancelled state sticks, whatever the run does next
    assert record(dag_id, run_id, "success") == "RUN_CANCELLED"


def test_a_cancel_the_scheduler_ends_as_success_in_between(client, setup, gateway, record, analysis_settings,
                                                          monkeypatch) -> None:
    """cancel_run skips the unfinished tasks before it fails the run, and the scheduler may end the run as
    success in between: its listener call must not record RUN_COMPLETED or an output file."""
    aid, dag_id, run_id, _ = _start(client, setup, gateway, analysis_settings)
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 0, "running", 1)]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_STARTED"
    gateway.xcoms[(dag_id, run_id, "record-losses-files")] = {"output_file": "file:///x/output.tar.gz"}
    seen, skip_and_fail = [], gateway.cancel

    def cancel(dag: str, run: str) -> None:
        seen.append(record(dag, run, "success"))  # the scheduler, between the skips and the failed run
        skip_and_fail(dag, run)
        seen.append(record(dag, run, "failed"))  # this process's listener, when the run is failed

    monkeypatch.setattr(gateway, "cancel", cancel)
    body = _post(client, aid, "cancel").json()
    assert seen == ["RUN_CANCELLED", "RUN_CANCELLED"]
    assert body["status"] == "RUN_CANCELLED" and body["output_file"] is None
    # the run was past its inputs stage: the input files are recorded and usable by a new run
    assert body["input_file"] == f"http://testserver/v2/analyses/{aid}/input_file/"


def test_a_failed_chunk_is_run_error(client, setup, gateway, record, analysis_settings) -> None:
    aid, dag_id, run_id, _ = _start(client, setup, gateway, analysis_settings)
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "success", 1),
                                     TaskInstanceInfo("generate-losses-chunk", 0, "failed", 2)]
    assert record(dag_id, run_id, "failed") == "RUN_ERROR"
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["run_traceback_file"].endswith(f"/v2/analyses/{aid}/run_traceback_file/")


@pytest.mark.parametrize(("error", "expected"), [
    ("record-input-files (try 1): perilflow-worker record-input-files exited with code 3:\n"
     "perilflow-worker record-input-files: no keys: the lookup matched none of 10 locations",
     "INPUTS_GENERATION_NO_KEYS"),
    ("write-input-files (try 2): perilflow-worker write-input-files exited with code 1:\nMemoryError",
     "INPUTS_GENERATION_ERROR"),
])
def test_no_keys_from_the_errors_files(client, setup, gateway, record, settings, analysis_settings, error,
                                       expected) -> None:
    aid, dag_id, run_id, conf = _start(client, setup, gateway, analysis_settings, "generate_inputs")
    assert dag_id == INPUTS
    folder = Path(settings.storage_url.removeprefix("file://")) / f"analysis-{aid}_files-{conf['run_uuid']}"
    (folder / "errors").mkdir(parents=True)
    (folder / "errors" / "record-input-files.log").write_text(error)
    gateway.tis[(dag_id, run_id)] = [TaskInstanceInfo("record-input-files", -1, "failed", 1)]
    assert record(dag_id, run_id, "failed") == expected
    body = client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()
    assert body["status"] == expected and body["input_generation_traceback_file"]
    # generate_inputs may start again from either
    assert _post(client, aid, "generate_inputs").status_code == 200


def test_other_runs_are_ignored(client, setup, gateway, record, analysis_settings) -> None:
    assert record("some_other_dag", "manual__1", "success") is None
    assert record(BOTH, "not-an-analysis-run", "success") is None


def test_hooks_never_raise(monkeypatch, caplog) -> None:
    def boom():
        raise RuntimeError("product DB down")

    monkeypatch.setattr(listener, "_product", boom)
    run = SimpleNamespace(dag_id=BOTH, run_id="analysis-1-x", end_date=None)
    listener.on_dag_run_running(dag_run=run, msg="")
    listener.on_dag_run_success(dag_run=run, msg="")
    listener.on_dag_run_failed(dag_run=run, msg="")
    assert "product DB down" in caplog.text


def test_the_plugin_registers_the_listener() -> None:
    from perilflow.plugins.plugin import PerilflowPlugin

    assert listener in PerilflowPlugin.listeners


#: in a fresh interpreter: call on_starting as a task process does, then as a job does; print what was imported
WARM = """
import sys
from perilflow.plugins import listener

class TaskRunnerMarker: ...
class Job: ...  # stands for airflow.jobs.job.Job, which the hook recognises by name

POD = "airflow.providers.cncf.kubernetes.operators.pod"
before = POD in sys.modules
listener.on_starting(component=TaskRunnerMarker())
after_marker = POD in sys.modules
listener.on_starting(component=Job())
print(before, after_marker, all(name in sys.modules for name in (*listener.DAG_MODULES, POD)))
"""


@pytest.mark.parametrize(("executor", "warmed"), [("LocalExecutor", True), ("CeleryExecutor", False),
                                                  ("KubernetesExecutor", False)])
def test_a_job_under_the_local_executor_imports_the_dag_modules_before_it_forks(executor, warmed) -> None:
    """The scheduler's LocalExecutor forks its task processes: modules it imported at start are theirs for free.
    Other executors start tasks elsewhere (Celery workers, pods), and task processes themselves import nothing."""
    env = dict(os.environ, AIRFLOW__CORE__EXECUTOR=executor)
    done = subprocess.run([sys.executable, "-c", WARM], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-3:] == ["False", "False", str(warmed)]
