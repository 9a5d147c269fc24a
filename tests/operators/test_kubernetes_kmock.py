"""ModelStepOperator with backend ``kubernetes``, unmodified, against an in-memory Kubernetes API.

kmock's emulator serves the Kubernetes API over HTTP on 127.0.0.1; KubernetesPodOperator
talks to it through a kubeconfig file, exactly as to a cluster (create, list, read, patch,
delete). A toy kubelet (tests/operators/kube_emulator.py) runs each pod's container
command as a local process, with the pod's env and its volume mounts mapped to local
folders, and reports the exit code in the pod status. Log streaming, exec (xcom sidecar)
and deferrable mode are not emulated: the operator runs with ``get_logs=False`` and
``do_xcom_push=False``.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
from airflow.sdk.exceptions import AirflowFailException

import tests.operators.conftest  # noqa: F401 - the isolated AIRFLOW_HOME, before Airflow reads its config
from perilflow.operators.model_step import MODELS_MOUNT, ModelStepOperator
from tests.conftest import require_shared
from tests.operators.kube_emulator import EmulatedCluster, ToyKubelet

pytestmark = [pytest.mark.integration, pytest.mark.reference,
              pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")]

K8S_VERSION = "1.33"
EXECUTE_TIMEOUT = 45.0
_NAMESPACES = (f"perilflow-kmock-{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def cluster():
    emulated = EmulatedCluster(lifetime=180).start()
    yield emulated
    emulated.stop()


@pytest.fixture
def kube(cluster, tmp_path, monkeypatch):
    """A fresh namespace (kmock ignores label selectors), a kubeconfig and a toy kubelet for one test."""
    piwind = require_shared("piwind")
    storage = tmp_path / "storage"
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", f"file://{storage}")
    monkeypatch.setenv("PERILFLOW_MODELS_PVC", "piwind-models")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow:db-secret@db/airflow")
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    kubelet = ToyKubelet(kubeconfig, {"models": piwind}, lifetime=60, step_timeout=40)
    kubelet.start()
    yield SimpleNamespace(cluster=cluster, kubeconfig=kubeconfig, kubelet=kubelet, namespace=next(_NAMESPACES),
                          piwind=piwind, storage=storage)
    kubelet.stop()


class TI(SimpleNamespace):
    def xcom_push(self, key, value):
        self.pushed[key] = value


def context_for(task_id: str) -> dict:
    run_id = "manual__2026-11-22T05:00:00+00:00"
    ti = TI(dag_id="perilflow_input_generation", task_id=task_id, map_index=-1, run_id=run_id, try_number=1,
            pushed={})
    return {"ti": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=ti.dag_id)}


def run_step(kube, step: str, params: dict):
    """operator.execute(context) in a thread joined with a deadline; returns (result or exception, context)."""
    op = ModelStepOperator(
        task_id=step, step=step, config_file=str(kube.kubeconfig), get_logs=False, do_xcom_push=False,
        startup_check_interval_seconds=1, base_container_status_polling_interval=0.2,
        startup_timeout_seconds=30, schedule_timeout_seconds=30,
        step_params={**params, "_runtime": {"backend": "kubernetes", "namespace": kube.namespace,
                                            "analysis_id": 7, "env": {"NUMBA_NUM_THREADS": "1"},
                                            "resources": {"requests": {"cpu": "1", "memory": "512Mi"},
                                                          "limits": {"memory": "2Gi"}}}})
    context = context_for(step)
    outcome: list = []

    def execute():
        try:
            outcome.append(op.execute(context))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=execute, name=f"execute-{step}", daemon=True)
    thread.start()
    thread.join(EXECUTE_TIMEOUT)
    assert not thread.is_alive(), f"{step} did not finish within {EXECUTE_TIMEOUT} s; kubelet: {kube.kubelet.errors}"
    assert not kube.kubelet.errors, kube.kubelet.errors
    return outcome[0], context


def portfolio(piwind: Path, location: str = "SourceLocOEDPiWind10.csv") -> dict:
    exposure = piwind / "exposure_data"
    return {"location": f"file://{exposure / location}", "account": f"file://{exposure / 'SourceAccOEDPiWind.csv'}"}


def assert_pod_deleted(kube, name: str) -> None:
    assert kube.cluster.pods(kube.namespace) == []
    assert kube.cluster.pod_history(kube.namespace) == [(name, True)]


def test_pre_analysis_hook_runs_in_a_pod(kube):
    prefix = f"file://{kube.storage}/analysis-7_files-abc/exposure"
    result, context = run_step(kube, "pre-analysis-hook", {"portfolio": portfolio(kube.piwind), "exposure": prefix})
    assert not isinstance(result, BaseException), result

    (run,) = kube.kubelet.runs
    assert run.namespace == kube.namespace and run.exit_code == 0, run.output
    assert Path(run.argv[0]).name == "perilflow-worker" and run.argv[1:3] == ["pre-analysis-hook", "--params"]
    assert json.loads(run.argv[3]) == {"portfolio": portfolio(kube.piwind), "exposure": prefix}
    assert json.loads(run.output.splitlines()[-1])["locations"] == 10

    out = kube.storage / "analysis-7_files-abc" / "exposure"
    assert json.loads((out / "exposure.json").read_text()) == {"account": "account.csv", "location": "location.csv"}
    assert (out / "location.csv").read_bytes() == (kube.piwind / "exposure_data/SourceLocOEDPiWind10.csv").read_bytes()

    # the pod the API server stored, round-tripped: valid, the model-step contract, no database credentials
    pod = run.pod
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    base = pod["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in base["env"]}["PERILFLOW_MODEL_ROOT"] == MODELS_MOUNT
    assert "db-secret" not in json.dumps(pod)
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "piwind-models", "readOnly": True}
    assert pod["metadata"]["labels"]["perilflow/step"] == "pre-analysis-hook"
    assert pod["metadata"]["labels"]["perilflow/analysis"] == "7"

    assert context["ti"].pushed == {"pod_name": run.name, "pod_namespace": kube.namespace}
    assert_pod_deleted(kube, run.name)


def test_failing_step_fails_the_task_and_deletes_the_pod(kube):
    prefix = f"file://{kube.storage}/analysis-7_files-abc/exposure"
    params = {"portfolio": portfolio(kube.piwind, "NoSuchLocations.csv"), "exposure": prefix}
    result, _ = run_step(kube, "pre-analysis-hook", params)

    # the worker's exit code 2 (bad input) fails the task for good, as on the local backend: no retry
    assert isinstance(result, AirflowFailException), result
    assert "returned a failure" in str(result)
    assert "NoSuchLocations.csv: no such file" in str(result)  # the container's termination message
    (run,) = kube.kubelet.runs
    assert run.exit_code == 2  # the worker's bad-input code
    assert not (kube.storage / "analysis-7_files-abc").exists()
    assert_pod_deleted(kube, run.name)
