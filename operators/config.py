"""Platform settings, read from the environment when a task runs (never at DAG parse time).

=================================  ======================================================
variable                           meaning (default)
=================================  ======================================================
PERILFLOW_STORAGE_URL              base of the shared storage: ``file:///path`` or
                                   ``s3://bucket/prefix`` (``$AIRFLOW_HOME/perilflow-storage``)
PERILFLOW_STORAGE_CONN_ID          Airflow connection for ``s3://`` storage (``aws_default``)
PERILFLOW_BACKEND                  where model steps run: ``local`` or ``kubernetes`` (local)
PERILFLOW_MODEL_ROOT               folder holding the models' files, as the Airflow workers
                                   and the local backend see it (``$AIRFLOW_HOME/models``)
PERILFLOW_WORKER_IMAGE             default model-worker image (``perilflow/model-worker:latest``)
PERILFLOW_NAMESPACE                Kubernetes namespace of worker pods (``perilflow``)
PERILFLOW_MODELS_PVC               claim holding the models in the cluster (``perilflow-models``)
PERILFLOW_WORKER_SERVICE_ACCOUNT   service account of worker pods ("" = the namespace's default)
PERILFLOW_RETRIES                  attempts per sub-task, the first included (3)
PERILFLOW_RETRY_DELAY              seconds between attempts (6)
PERILFLOW_KEEP_REMOTE_DATA         keep a run's temporary storage after cleanup (False)
PERILFLOW_STEP_TIMEOUT             seconds a model step may run (86400)
PERILFLOW_STEP_MEMORY_LIMIT_MB     local backend: a step's RSS limit, 0 = none (0)
PERILFLOW_API_URL                  Airflow api-server, for stopping a failed run's siblings
                                   (``http://127.0.0.1:8080``)
PERILFLOW_API_USER / _PASSWORD     service account for that call (admin / $..._PASSWORD)
PERILFLOW_API_PASSWORDS_FILE       or the simple auth manager's passwords file
=================================  ======================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TRUE = {"1", "true", "yes", "on"}


def _airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in TRUE


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer; set it to a whole number") from None


@dataclass(frozen=True)
class PlatformConfig:
    storage_url: str
    storage_conn_id: str
    backend: str
    model_root: Path
    worker_image: str
    namespace: str
    models_pvc: str
    worker_service_account: str
    attempts: int
    retry_delay: int
    keep_remote_data: bool
    step_timeout: int
    step_memory_limit_mb: int
    api_url: str

    @classmethod
    def from_env(cls) -> PlatformConfig:
        home = _airflow_home()
        backend = os.environ.get("PERILFLOW_BACKEND", "local")
        if backend not in ("local", "kubernetes"):
            raise ValueError(f"PERILFLOW_BACKEND={backend!r}; use 'local' or 'kubernetes'")
        attempts = _int("PERILFLOW_RETRIES", 3)
        if attempts < 1:
            raise ValueError(f"PERILFLOW_RETRIES={attempts}; it counts attempts, so it must be at least 1")
        return cls(
            storage_url=os.environ.get("PERILFLOW_STORAGE_URL", f"file://{home / 'perilflow-storage'}").rstrip("/"),
            storage_conn_id=os.environ.get("PERILFLOW_STORAGE_CONN_ID", "aws_default"),
            backend=backend,
            model_root=Path(os.environ.get("PERILFLOW_MODEL_ROOT", home / "models")),
            worker_image=os.environ.get("PERILFLOW_WORKER_IMAGE", "perilflow/model-worker:latest"),
            namespace=os.environ.get("PERILFLOW_NAMESPACE", "perilflow"),
            models_pvc=os.environ.get("PERILFLOW_MODELS_PVC", "perilflow-models"),
            worker_service_account=os.environ.get("PERILFLOW_WORKER_SERVICE_ACCOUNT", ""),
            attempts=attempts,
            retry_delay=_int("PERILFLOW_RETRY_DELAY", 6),
            keep_remote_data=_flag("PERILFLOW_KEEP_REMOTE_DATA"),
            step_timeout=_int("PERILFLOW_STEP_TIMEOUT", 86_400),
            step_memory_limit_mb=_int("PERILFLOW_STEP_MEMORY_LIMIT_MB", 0),
            api_url=os.environ.get("PERILFLOW_API_URL", "http://127.0.0.1:8080").rstrip("/"),
        )


def retries_from_env() -> int:
    """Airflow ``retries`` (attempts after the first) for every Perilflow task; read at parse time."""
    return max(0, _int("PERILFLOW_RETRIES", 3) - 1)


def retry_delay_from_env() -> int:
    return _int("PERILFLOW_RETRY_DELAY", 6)
