"""A small client of Airflow's public REST API v2, for what tasks may not do through the ORM.

Task code has no database access in Airflow 3, so stopping a failed run's other chunks and
cancelling a run go through the api-server, authenticated as a service account:
``PERILFLOW_API_USER`` with ``PERILFLOW_API_PASSWORD``, or the password of that user in
the simple auth manager's passwords file (``PERILFLOW_API_PASSWORDS_FILE``, else
``[core] simple_auth_manager_passwords_file``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

UNFINISHED = (None, "none", "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "deferred",
              "restarting", "awaiting_input")


class AirflowApiError(RuntimeError):
    """The api-server refused or could not be reached (the message says which call and why)."""


def _password(user: str) -> str:
    password = os.environ.get("PERILFLOW_API_PASSWORD")
    if password:
        return password
    path = os.environ.get("PERILFLOW_API_PASSWORDS_FILE") or os.environ.get(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    if not path:
        home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
        path = str(home / "simple_auth_manager_passwords.json.generated")
    try:
        return json.loads(Path(path).read_text())[user]
    except (OSError, ValueError, KeyError):
        raise AirflowApiError(f"no password for API user {user!r}: set PERILFLOW_API_PASSWORD, or "
                              f"PERILFLOW_API_PASSWORDS_FILE to a JSON file holding it (tried {path})") from None


class AirflowApi:
    """``GET/PATCH/POST`` on ``{base}/api/v2`` with a JWT from ``/auth/token``."""

    def __init__(self, base_url: str, user: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.user = user or os.environ.get("PERILFLOW_API_USER", "admin")
        self._password = password
        self.client = httpx.Client(timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self) -> str:
        if self._token is None:
            password = self._password or _password(self.user)
            try:
                reply = self.client.post(f"{self.base}/auth/token", json={"username": self.user, "password": password})
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"POST {self.base}/auth/token: {exc}; is the api-server running?") from None
            if reply.status_code >= 300:
                raise AirflowApiError(f"POST /auth/token: {reply.status_code} {reply.text[:200]}")
            self._token = reply.json()["access_token"]
        return self._token

    def call(self, method: str, path: str, *, attempts: int = 4, **kwargs: Any) -> Any:
        """One API call; a 5xx answer (e.g. SQLite "database is locked" under a busy scheduler) is retried.

        Every call made here is idempotent (reads, setting a state), so up to ``attempts`` tries
        with 0.5, 1, 2 s pauses are safe; a 4xx is raised at once.
        """
        url = f"{self.base}/api/v2{path}"
        for attempt in range(attempts):
            try:
                reply = self.client.request(method, url, headers={"Authorization": f"Bearer {self.token()}"},
                                            **kwargs)
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"{method} {url}: {exc}") from None
            if reply.status_code < 500 or attempt == attempts - 1:
                break
            time.sleep(0.5 * 2 ** attempt)
        if reply.status_code >= 300:
            raise AirflowApiError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json() if reply.content else None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        out: list[dict[str, Any]] = []
        while True:
            page = self.call("GET", path, params={"limit": 1000, "offset": len(out)})
            out.extend(page["task_instances"])
            if len(out) >= page["total_entries"] or not page["task_instances"]:
                return out

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str) -> None:
        path = (f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                f"{quote(task_id, safe='')}")
        if map_index >= 0:
            path += f"/{map_index}"
        try:
            self.call("PATCH", path, json={"new_state": state})
        except AirflowApiError as exc:
            # the scheduler may get there first (skipping an upstream task skips its downstream tasks)
            if f"already in {state} state" not in str(exc):
                raise

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        self.call("PATCH", f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}", json={"state": state})
