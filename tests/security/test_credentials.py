"""Credential hygiene (issue 8): model steps and algorithm pods never see a database URL or password.

The Airflow worker that starts a step has the metadata DB and product DB URLs (with their
password) in its environment; a step gets storage credentials only. Checked on the pod spec of
every worker step (``configure_pod``, as KubernetesPodOperator would submit it) and of the
algorithm pod (all three containers), for ``file://`` and ``s3://`` storage, and on the real
environment of a local-backend step: ``ModelStepOperator.execute`` runs a command that prints
its environment.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from kubernetes.client import ApiClient

from perilflow.kernel.worker import STEPS
from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import RUNTIME_KEY, ModelStepOperator, configure_pod

DB_PASSWORD = "pw-4c7b1e0d-db-secret"
AIRFLOW_DB = f"postgresql+psycopg2://airflow:{DB_PASSWORD}@db.internal:5432/airflow"
PRODUCT_DB = f"postgresql+psycopg2://perilflow:{DB_PASSWORD}@db.internal:5432/perilflow"
STORAGE_SECRET = "storage-secret-key-7f3a"
FORBIDDEN_NAMES = ("AIRFLOW__DATABASE", "PERILFLOW_DATABASE_URL", "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
                   "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "PGPASSWORD")


@pytest.fixture(autouse=True)
def worker_env(monkeypatch, tmp_path):
    """The Airflow worker's environment: both databases' URLs, a password, Airflow secrets."""
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", AIRFLOW_DB)
    monkeypatch.setenv("PERILFLOW_DATABASE_URL", PRODUCT_DB)
    monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet-" + DB_PASSWORD)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "jwt-" + DB_PASSWORD)
    monkeypatch.setenv("PERILFLOW_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", f"file://{tmp_path / 'storage'}")
    monkeypatch.setenv("PERILFLOW_BACKEND", "local")
    (tmp_path / "models").mkdir()


def assert_clean(env: dict[str, str], where: str) -> None:
    """No variable named after a database setting, and no value holding a DB URL, the password or a secret."""
    for name, value in env.items():
        assert not name.startswith(FORBIDDEN_NAMES), f"{where}: {name} reaches the step"
        for secret in (DB_PASSWORD, AIRFLOW_DB, PRODUCT_DB, "postgresql", "sql_alchemy"):
            assert secret not in str(value), f"{where}: {name}={value!r} holds a database credential"


def _pod_env(doc: dict) -> list[tuple[str, dict[str, str], list]]:
    containers = (doc["spec"].get("initContainers") or []) + doc["spec"]["containers"]
    return [(c["name"], {e["name"]: e.get("value", "") for e in c.get("env") or []}, c.get("envFrom") or [])
            for c in containers]


@pytest.mark.parametrize("storage", ["file:///srv/perilflow/storage", "s3://perilflow-runs/prod"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_model_step_pods_hold_no_database_credentials(monkeypatch, step: str, storage: str) -> None:
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", storage)
    op = ModelStepOperator(task_id=step, step=step)
    runtime = {"worker_image": "registry.example.com/piwind-worker:1", "env": {"NUMBA_NUM_THREADS": 2}}
    configure_pod(op, PlatformConfig.from_env(), runtime, {"chunk_index": 0}, {"perilflow/analysis": "7"})
    doc = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    assert DB_PASSWORD not in json.dumps(doc) and "postgresql" not in json.dumps(doc)
    for name, env, env_from in _pod_env(doc):
        assert_clean(env, f"{step} pod, container {name}")
        # the only secret a step may mount is the storage one (s3:// storage)
        assert [e["secretRef"]["name"] for e in env_from] == (["perilflow-storage"] if storage.startswith("s3")
                                                              else [])


@pytest.mark.parametrize("backend", ["local", "kubernetes"])
def test_algorithm_pods_hold_no_database_credentials(monkeypatch, backend: str) -> None:
    from perilflow.operators.algorithms import AlgorithmOperator, configure_algorithm_pod

    monkeypatch.setenv("PERILFLOW_STORAGE_URL", "s3://perilflow-runs/prod")
    op = AlgorithmOperator()
    conf = {"task_id": 3, "algorithm": {"image": "python:3.11-slim", "command": ["python", "count.py"],
                                        "env": {"ROWS": 10}},
            "input_files": [{"name": "a.csv", "uri": "s3://perilflow-runs/prod/datasets/1/a.csv"}]}
    configure_algorithm_pod(op, PlatformConfig.from_env(), conf, "s3://perilflow-runs/prod/tasks/3", backend)
    doc = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    assert DB_PASSWORD not in json.dumps(doc) and "postgresql" not in json.dumps(doc)
    containers = _pod_env(doc)
    assert len(containers) == 3  # stage, collect, the algorithm
    for name, env, env_from in containers:
        assert_clean(env, f"algorithm pod, container {name}")
        assert all(e["secretRef"]["name"] == "perilflow-storage" for e in env_from)


class _TI(SimpleNamespace):
    def xcom_push(self, key, value) -> None:
        pass


PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def _run_local_step(storage_env: dict[str, str] | None = None) -> dict[str, str]:
    """ModelStepOperator.execute on the local backend, for a step whose command prints its environment."""
    runtime = {"worker_command": ["python", "-c", PRINT_ENV], "env": {"NUMBA_NUM_THREADS": "1"}}
    op = ModelStepOperator(task_id="generate-losses-chunk", step="generate-losses-chunk",
                           step_params={RUNTIME_KEY: runtime, "chunk_index": 0})
    ti = _TI(dag_id="perilflow_losses_generation", task_id="generate-losses-chunk", map_index=0,
             run_id="manual__1", try_number=1)
    context = {"ti": ti, "run_id": "manual__1", "dag": SimpleNamespace(dag_id=ti.dag_id), "params": {},
               "dag_run": SimpleNamespace(conf={})}
    env = op.execute(context)
    assert isinstance(env, dict) and env, "the step printed no environment"
    return env


def test_a_local_step_runs_without_database_credentials() -> None:
    env = _run_local_step()
    assert_clean(env, "local step")
    assert env["PERILFLOW_WORK_DIR"] and env["NUMBA_NUM_THREADS"] == "1"  # the pod's own env did arrive
    assert not [name for name in env if name.startswith("AIRFLOW")], sorted(env)


def test_a_local_step_on_s3_gets_the_storage_keys_only(monkeypatch) -> None:
    """With s3:// storage the step gets the storage connection's keys, and still nothing of the databases."""
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", "s3://perilflow-runs/prod")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "AKIASTORAGEONLY", "password": STORAGE_SECRET,
        "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-2"}}))
    env = _run_local_step()
    assert_clean(env, "local step (s3 storage)")
    assert env["AWS_ACCESS_KEY_ID"] == "AKIASTORAGEONLY" and env["AWS_SECRET_ACCESS_KEY"] == STORAGE_SECRET
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert not [name for name in env if name.startswith("AIRFLOW")], sorted(env)


def test_the_check_catches_a_leak() -> None:
    """The checks above can fail: a DB URL in a value, or a database setting's name, is caught."""
    with pytest.raises(AssertionError):
        assert_clean({"MODEL_OPTS": f"--db {AIRFLOW_DB}"}, "control")
    with pytest.raises(AssertionError):
        assert_clean({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite://"}, "control")
