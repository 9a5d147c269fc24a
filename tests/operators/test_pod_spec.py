"""The model-step pod spec, and the local backend that runs that same pod as a process.

The pod is the one KubernetesPodOperator would submit: ``build_pod_request_obj`` after
``configure_pod``, serialised as the API server would receive it and checked against the
Kubernetes OpenAPI schema (kubernetes-validate, strict). No cluster and no database.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import psutil
import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import ApiClient

import tests.operators.conftest  # noqa: F401 - the isolated AIRFLOW_HOME, before Airflow reads its config
from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import (
    MODELS_MOUNT,
    WORK_MOUNT,
    LocalPodRunner,
    ModelStepOperator,
    StepFailed,
    configure_pod,
)

#: Kubernetes version the pod must be valid for (the oldest the Helm chart supports)
K8S_VERSION = "1.33"
DB_SECRET = "s3cr3t-db-password"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

RUNTIME = {
    "worker_image": "registry.example.com/perilflow/piwind-worker:1.4.2",
    "resources": {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"cpu": "4", "memory": "6Gi"}},
    "node_selector": {"perilflow.io/pool": "models", "kubernetes.io/arch": "amd64"},
    "env": {"NUMBA_NUM_THREADS": 4, "PIWIND_SCRATCH": f"{WORK_MOUNT}/piwind"},
    "analysis_id": 42,
}
PARAMS = {"exposure": "s3://bucket/runs/analysis-42_files-abc/exposure", "lookup_config_json":
          "keys_data/PiWind/lookup_config.json", "chunk_index": 3, "n_chunks": 16,
          "output": "s3://bucket/runs/analysis-42_files-abc/lookup-3.tar.gz"}
CONTEXT_LABELS = {"perilflow/dag-id": "perilflow_input_generation", "perilflow/task-id": "prepare-keys-file",
                  "perilflow/map-index": "3", "perilflow/analysis": "42"}


@pytest.fixture(autouse=True)
def platform_env(monkeypatch):
    """Database credentials in the Airflow worker's env (they must never reach a pod)."""
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"postgresql://airflow:{DB_SECRET}@db:5432/airflow")
    monkeypatch.setenv("PERILFLOW_DATABASE_URL", f"postgresql://perilflow:{DB_SECRET}@db:5432/perilflow")
    monkeypatch.setenv("PERILFLOW_MODELS_PVC", "piwind-models-v1")
    monkeypatch.setenv("PERILFLOW_NAMESPACE", "perilflow-models")
    monkeypatch.delenv("PERILFLOW_WORKER_IMAGE", raising=False)


def build_pod(runtime=RUNTIME, params=PARAMS, labels=CONTEXT_LABELS, step="prepare-keys-file"):
    op = ModelStepOperator(task_id=step, step=step)
    configure_pod(op, PlatformConfig.from_env(), runtime, params, labels)
    return op.build_pod_request_obj(dry_run=True)


def serialize(pod) -> dict:
    return ApiClient().sanitize_for_serialization(pod)


def container(doc: dict) -> dict:
    (base,) = doc["spec"]["containers"]
    return base


def assert_valid(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    for key, value in doc["metadata"]["labels"].items():
        prefix, _, name = key.rpartition("/")
        assert LABEL_NAME.match(name) and len(name) <= 63, key
        assert not prefix or (DNS_SUBDOMAIN.match(prefix) and len(prefix) <= 253), key
        assert isinstance(value, str) and LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    assert DNS_SUBDOMAIN.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63


class TI(SimpleNamespace):
    """The task instance fields KubernetesPodOperator reads from the context."""

    def xcom_push(self, key, value):
        self.__dict__.setdefault("pushed", {})[key] = value


def context_for(task_id: str, map_index: int = -1, dag_id: str = "perilflow_input_generation") -> dict:
    run_id = "manual__2026-11-22T05:00:00.123456+00:00"
    ti = TI(dag_id=dag_id, task_id=task_id, map_index=map_index, run_id=run_id, try_number=1)
    return {"ti": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=dag_id), "params": {},
            "dag_run": SimpleNamespace(conf={})}


@pytest.fixture
def submitted(monkeypatch):
    """Run ModelStepOperator.execute with backend kubernetes; return the pod KPO would submit."""
    pods = []

    def capture(self, context):
        pods.append(self.build_pod_request_obj(context, dry_run=True))

    monkeypatch.setattr(KubernetesPodOperator, "execute", capture)

    def run(op, context):
        op.execute(context)
        return serialize(pods[-1])

    return run


# -- the pod spec ------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["file:///srv/perilflow/storage", "s3://perilflow-runs/prod"])
def test_pod_is_valid_kubernetes(monkeypatch, storage):
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", storage)
    doc = serialize(build_pod())
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Pod"
    assert_valid(doc)


def test_invalid_field_is_caught():
    """The schema check is strict: an unknown field fails it (so the passing tests mean something)."""
    doc = serialize(build_pod())
    container(doc)["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_command_and_args():
    base = container(serialize(build_pod()))
    assert base["image"] == RUNTIME["worker_image"]
    assert base["command"] == ["perilflow-worker"]
    assert base["args"][:2] == ["prepare-keys-file", "--params"]
    assert json.loads(base["args"][2]) == PARAMS
    assert len(base["args"]) == 3


def test_defaults_from_platform_config(monkeypatch):
    monkeypatch.setenv("PERILFLOW_WORKER_IMAGE", "registry.example.com/perilflow/model-worker:0.1.0")
    doc = serialize(build_pod(runtime={}))
    base = container(doc)
    assert base["image"] == "registry.example.com/perilflow/model-worker:0.1.0"
    assert base["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert doc["metadata"]["namespace"] == "perilflow-models"
    assert_valid(doc)


def test_env_is_the_pod_contract_and_holds_no_database_credentials():
    doc = serialize(build_pod())
    env = {e["name"]: e["value"] for e in container(doc)["env"]}
    assert env == {"PERILFLOW_MODEL_ROOT": MODELS_MOUNT, "PERILFLOW_WORK_DIR": WORK_MOUNT,
                   "NUMBA_NUM_THREADS": "4", "PIWIND_SCRATCH": f"{WORK_MOUNT}/piwind"}
    text = json.dumps(doc)
    assert DB_SECRET not in text and "SQL_ALCHEMY" not in text and "DATABASE" not in text
    assert not any(name.startswith("AIRFLOW") for name in env)


def test_models_volume_is_a_read_only_claim():
    doc = serialize(build_pod())
    volumes = {v["name"]: v for v in doc["spec"]["volumes"]}
    assert volumes["models"] == {"name": "models",
                                 "persistentVolumeClaim": {"claimName": "piwind-models-v1", "readOnly": True}}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    mounts = {m["name"]: m for m in container(doc)["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True}
    assert mounts["work"]["mountPath"] == WORK_MOUNT and not mounts["work"].get("readOnly")


def test_resources_node_selector_and_pod_settings():
    doc = serialize(build_pod())
    assert container(doc)["resources"] == RUNTIME["resources"]
    assert doc["spec"]["nodeSelector"] == RUNTIME["node_selector"]
    assert doc["spec"]["restartPolicy"] == "Never"
    assert doc["spec"]["activeDeadlineSeconds"] == PlatformConfig.from_env().step_timeout
    assert doc["metadata"]["namespace"] == "perilflow-models"


def test_labels_are_valid_label_values():
    long_task = "losses_generation." + "generate-losses-chunk-" * 4
    labels = {**CONTEXT_LABELS, "perilflow/task-id": long_task, "perilflow/analysis": "analysis 42 (nightly)"}
    doc = serialize(build_pod(labels=labels))
    got = doc["metadata"]["labels"]
    assert got["app.kubernetes.io/name"] == "perilflow-model-worker"
    assert got["perilflow/step"] == "prepare-keys-file"
    assert got["perilflow/dag-id"] == "perilflow_input_generation"
    assert got["perilflow/map-index"] == "3"
    assert got["perilflow/task-id"].startswith("losses_generation.generate-losses-chunk")
    assert_valid(doc)


@pytest.mark.parametrize(("storage", "env_from"), [
    ("file:///srv/perilflow/storage", None),
    ("s3://perilflow-runs/prod", [{"secretRef": {"name": "perilflow-storage"}}]),
])
def test_storage_credentials_come_from_a_secret_for_s3_only(monkeypatch, storage, env_from):
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", storage)
    base = container(serialize(build_pod()))
    assert (base.get("envFrom") or None) == env_from


def test_execute_strips_runtime_and_labels_the_task(submitted):
    op = ModelStepOperator(task_id="pre-analysis-hook", step="pre-analysis-hook",
                           step_params={**PARAMS, "_runtime": {**RUNTIME, "backend": "kubernetes"}})
    doc = submitted(op, context_for("pre-analysis-hook"))
    assert_valid(doc)
    base = container(doc)
    assert json.loads(base["args"][2]) == PARAMS  # the worker never sees _runtime
    labels = doc["metadata"]["labels"]
    assert labels["perilflow/analysis"] == "42" and labels["perilflow/task-id"] == "pre-analysis-hook"
    assert "perilflow/map-index" not in labels and "map_index" not in labels  # unmapped
    assert labels["dag_id"] == "perilflow_input_generation" and labels["kubernetes_pod_operator"] == "True"
    assert DB_SECRET not in json.dumps(doc)


def test_mapped_operator_builds_one_valid_pod_per_chunk(submitted):
    from airflow.sdk import DAG

    chunks = [{**PARAMS, "chunk_index": i, "_runtime": {**RUNTIME, "backend": "kubernetes"}} for i in range(3)]
    with DAG("perilflow_input_generation", schedule=None):
        mapped = ModelStepOperator.partial(task_id="prepare-keys-file", step="prepare-keys-file",
                                           startup_check_interval_seconds=1).expand(step_params=chunks)
    for i in range(3):
        context = context_for("prepare-keys-file", map_index=i)
        context["dag"] = mapped.dag
        mapped.render_template_fields(context)  # as the task runner does: unmaps into context["task"]
        op = context["task"]
        assert isinstance(op, ModelStepOperator) and op.step_params == chunks[i]
        doc = submitted(op, context)
        assert_valid(doc)
        assert json.loads(container(doc)["args"][2]) == {**PARAMS, "chunk_index": i}
        assert doc["metadata"]["labels"]["perilflow/map-index"] == str(i)
        assert doc["metadata"]["labels"]["map_index"] == str(i)


# -- the local backend runs that same pod -----------------------------------------------------


def script_pod(script: str, *, resources=None, env=None, step="probe"):
    """The model-step pod whose command is a small Python script instead of the worker."""
    runtime = {"worker_command": [sys.executable, "-c", script], "env": env or {}}
    if resources:
        runtime["resources"] = resources
    return build_pod(runtime=runtime, params={"n": 1}, step=step)


ENV_PROBE = """
import json, os, sys
root, work = os.environ["PERILFLOW_MODEL_ROOT"], os.environ["PERILFLOW_WORK_DIR"]
print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(),
                  "work_is_dir": os.path.isdir(work),
                  "model_file": open(os.path.join(root, "model.txt")).read()}))
"""


def test_local_runner_maps_mounts_to_local_folders(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.txt").write_text("piwind")
    pod = script_pod(ENV_PROBE, env={"PIWIND_SCRATCH": f"{WORK_MOUNT}/piwind", "OTHER": "/var/perilflow/workers"})
    runner = LocalPodRunner(pod, {"models": models})
    seen = json.loads(runner.run().splitlines()[-1])
    env = seen["env"]
    assert seen["argv"] == ["probe", "--params", '{"n": 1}']
    assert env["PERILFLOW_MODEL_ROOT"] == str(models) and seen["model_file"] == "piwind"
    work = Path(env["PERILFLOW_WORK_DIR"])
    assert seen["work_is_dir"] and work.name == "work" and str(work).startswith(seen["cwd"])
    assert env["PIWIND_SCRATCH"] == f"{work}/piwind"
    assert env["OTHER"] == "/var/perilflow/workers"  # a prefix of a mount path's text, not under it
    assert not work.exists()  # the emptyDir goes with the pod


def test_local_runner_passes_no_airflow_or_database_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet-" + DB_SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", f"postgresql://u:{DB_SECRET}@db/x")
    (tmp_path / "model.txt").write_text("m")
    env = json.loads(LocalPodRunner(script_pod(ENV_PROBE), {"models": tmp_path}).run().splitlines()[-1])["env"]
    assert not [k for k in env if k.startswith("AIRFLOW") or "DATABASE" in k or "SQL_ALCHEMY" in k]
    assert not [k for k, v in env.items() if DB_SECRET in v]
    assert Path(env["PATH"].split(":")[0]) == Path(sys.executable).parent


def test_failing_step_raises_with_exit_code_and_output_tail(tmp_path):
    script = "import sys\nfor i in range(100): print(f'line {i}')\nsys.stdout.flush()\n" \
             "print('boom: bad location file', file=sys.stderr)\n" \
             "sys.exit(7)"
    runner = LocalPodRunner(script_pod(script), {"models": tmp_path})
    with pytest.raises(StepFailed) as failed:
        runner.run()
    assert failed.value.exit_code == 7
    assert "exited with code 7" in str(failed.value)
    assert failed.value.tail.splitlines()[-1] == "boom: bad location file"
    assert "line 99" in failed.value.tail and "line 0\n" not in failed.value.tail  # the end, not everything


def test_memory_limit_kills_the_step(tmp_path):
    script = "import time\ndata = b'x' * (300 * 2**20)\nprint('allocated', flush=True)\ntime.sleep(30)"
    pod = script_pod(script, resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "100Mi"}})
    runner = LocalPodRunner(pod, {"models": tmp_path})
    assert runner.memory_limit == 100 * 2**20
    start = time.monotonic()
    with pytest.raises(StepFailed, match="exceeded its memory limit of 100 MiB") as failed:
        runner.run()
    assert time.monotonic() - start < 15
    assert failed.value.exit_code != 0
    assert runner.process.poll() is not None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_stops_the_step_and_its_children(tmp_path):
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print('child', child.pid, flush=True)\ntime.sleep(60)")
    runner = LocalPodRunner(script_pod(script), {"models": tmp_path})
    outcome: list[BaseException] = []

    def run():
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not runner.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.output and runner.output[0].startswith("child "), runner.output
    pids = [runner.process.pid, int(runner.output[0].split()[1])]
    start = time.monotonic()
    runner.kill()
    thread.join(15)
    assert not thread.is_alive()
    assert time.monotonic() - start < 10
    assert outcome and isinstance(outcome[0], StepFailed) and outcome[0].exit_code == -15
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids), pids


def test_worker_pods_run_as_the_worker_service_account_without_an_api_token(monkeypatch):
    doc = serialize(build_pod())
    assert "serviceAccountName" not in doc["spec"]  # unset: the namespace's default account
    monkeypatch.setenv("PERILFLOW_WORKER_SERVICE_ACCOUNT", "perilflow-model-worker")
    doc = serialize(build_pod())
    assert doc["spec"]["serviceAccountName"] == "perilflow-model-worker"
    assert doc["spec"]["automountServiceAccountToken"] is False
    assert_valid(doc)
