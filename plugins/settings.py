"""Settings of the Perilflow API, read from the environment once when the app is built.

=================================  ======================================================
variable                           meaning (default)
=================================  ======================================================
PERILFLOW_DATABASE_URL             product DB (``sqlite:///$AIRFLOW_HOME/perilflow.db``)
PERILFLOW_STORAGE_URL              base of the shared storage, as the workflows use it
                                   (``file://$AIRFLOW_HOME/perilflow-storage``)
PERILFLOW_STORAGE_CONN_ID          Airflow connection for ``s3://`` storage (``aws_default``)
PERILFLOW_MAX_UPLOAD_MB            largest accepted upload, in MiB (1024)
PERILFLOW_ADMIN_PRIORITIES         priorities only admins may give, e.g. ``8,9,10`` (8-10)
PERILFLOW_ADMIN_ROLES              auth-manager roles counted as admin (``admin``)
PERILFLOW_AIRFLOW_URL              api-server base for ``/auth/token`` proxying
                                   (``http://127.0.0.1:8080``)
=================================  ======================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def default_database_url() -> str:
    return os.environ.get("PERILFLOW_DATABASE_URL") or f"sqlite:///{_airflow_home() / 'perilflow.db'}"


def _int_list(value: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            out.extend(range(int(low), int(high) + 1))
        else:
            out.append(int(part))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class ApiSettings:
    """What the app needs to know; tests build one directly."""

    database_url: str
    storage_url: str
    storage_conn_id: str = "aws_default"
    max_upload_mb: float = 1024
    admin_priorities: tuple[int, ...] = (8, 9, 10)
    admin_roles: tuple[str, ...] = ("admin",)
    airflow_url: str = "http://127.0.0.1:8080"
    auth_type: str = "simple"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls) -> ApiSettings:
        home = _airflow_home()
        try:
            max_mb = float(os.environ.get("PERILFLOW_MAX_UPLOAD_MB", "1024"))
        except ValueError:
            raise ValueError("PERILFLOW_MAX_UPLOAD_MB is not a number; set it to the limit in MiB") from None
        try:
            priorities = _int_list(os.environ.get("PERILFLOW_ADMIN_PRIORITIES", "8-10"))
        except ValueError:
            raise ValueError("PERILFLOW_ADMIN_PRIORITIES must list integers or ranges, e.g. '8-10' or '9,10'") from None
        roles = tuple(r.strip().lower() for r in os.environ.get("PERILFLOW_ADMIN_ROLES", "admin").split(",")
                      if r.strip())
        return cls(
            database_url=default_database_url(),
            storage_url=os.environ.get("PERILFLOW_STORAGE_URL", f"file://{home / 'perilflow-storage'}").rstrip("/"),
            storage_conn_id=os.environ.get("PERILFLOW_STORAGE_CONN_ID", "aws_default"),
            max_upload_mb=max_mb,
            admin_priorities=priorities,
            admin_roles=roles,
            airflow_url=os.environ.get("PERILFLOW_AIRFLOW_URL", os.environ.get("PERILFLOW_API_URL",
                                                                                "http://127.0.0.1:8080")).rstrip("/"),
        )
