"""The embedded local platform: Airflow on SQLite with the LocalExecutor, everything under one folder.

``perilflow platform start`` (and ``make demo``) runs, in the background, Airflow's
``api-server`` (127.0.0.1:8080 by default, serving Airflow's UI and Perilflow's API at
``/perilflow``), ``scheduler`` and ``dag-processor``, with:

=====================================  ============================================
``<home>/airflow/``                    ``AIRFLOW_HOME``: ``airflow.db`` (SQLite), logs
``<home>/perilflow.db``                the product DB (models, portfolios, analyses)
``<home>/storage/``                    shared storage (``PERILFLOW_STORAGE_URL``)
``<home>/models/``                     model root (``PERILFLOW_MODEL_ROOT``)
``<home>/logs/<component>.log``        each component's output
``<home>/platform.json``               the running platform: pids, port, URL
``<home>/secrets.json``                admin password, API and JWT secrets (mode 600)
=====================================  ============================================

``<home>`` is ``$PERILFLOW_HOME`` or ``./.perilflow``. Parallelism is the machine's CPU
count (at least 2), so one machine runs as many model steps at once as it has cores.
SQLite is for one machine and a handful of users; a shared deployment uses PostgreSQL
(see docs/deploy.md). Every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import perilflow

ADMIN_USER = "admin"
DEFAULT_PORT = 8080
COMPONENTS = ("api-server", "scheduler", "dag-processor")
WORKFLOW_DAGS = ("perilflow_input_generation", "perilflow_losses_generation", "perilflow_generate_and_run")
STATE_FILE = "platform.json"
SECRETS_FILE = "secrets.json"


class PlatformError(RuntimeError):
    """The local platform could not be started, stopped or reached (the message names the fix)."""


def default_home() -> Path:
    return Path(os.environ.get("PERILFLOW_HOME") or ".perilflow").resolve()


def dags_folder() -> Path:
    """The repository's ``dags/`` (an editable install), or ``$PERILFLOW_DAGS_FOLDER``."""
    configured = os.environ.get("PERILFLOW_DAGS_FOLDER")
    folder = Path(configured) if configured else Path(perilflow.__file__).resolve().parents[1] / "dags"
    if not (folder / "perilflow_generate_and_run.py").is_file():
        raise PlatformError(f"no Perilflow DAGs in {folder}; set PERILFLOW_DAGS_FOLDER to the repository's dags/ "
                            "folder (or install Perilflow with `make install`, which links it)")
    return folder


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, through a temporary name."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def airflow_env(*, home: Path, port: int, executor: str, parallelism: int, sql_alchemy_conn: str, secret_key: str,
                jwt_secret: str, log_server_port: int, dags: Path | None = None) -> dict[str, str]:
    """``AIRFLOW__*`` settings of an api-server, scheduler and dag-processor on this machine (loopback ``port``).

    One admin user of the simple auth manager (password in ``<home>/passwords.json``), the task SDK
    reaching the execution API on the same api-server, DAG parsing in one process, two-second
    heartbeats. The local platform and the integration tests' harness both start Airflow with it.
    """
    url = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags or dags_folder()),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secret_key,
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }


def components_healthy(url: str) -> tuple[bool, Any]:
    """Whether Airflow at ``url`` reports its metadata DB, scheduler and dag-processor healthy, and what it said."""
    import httpx

    reply = httpx.get(f"{url}/api/v2/monitor/health", timeout=5)
    health = reply.json() if reply.status_code == 200 else reply.status_code
    healthy = isinstance(health, dict) and all((health.get(part) or {}).get("status") == "healthy"
                                               for part in ("metadatabase", "scheduler", "dag_processor"))
    return healthy, health


@dataclass
class LocalPlatform:
    """One local platform rooted at ``home``; :meth:`start`, :meth:`stop`, :meth:`status`."""

    home: Path
    port: int = DEFAULT_PORT
    parallelism: int = 0

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if self.parallelism <= 0:
            self.parallelism = max(2, os.cpu_count() or 2)

    # ------------------------------------------------------------------ layout

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def storage(self) -> Path:
        return self.home / "storage"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/perilflow"

    @property
    def product_db_url(self) -> str:
        return f"sqlite:///{self.home / 'perilflow.db'}"

    def secrets(self) -> dict[str, str]:
        """The admin password and server secrets, made once and kept (so tokens survive a restart)."""
        path = self.home / SECRETS_FILE
        if path.exists():
            return dict(json.loads(path.read_text()))
        self.home.mkdir(parents=True, exist_ok=True)
        values = {"admin_password": secrets.token_urlsafe(12), "secret_key": secrets.token_hex(32),
                  "jwt_secret": secrets.token_hex(32)}
        _write_private(path, values)
        return values

    def state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.home / STATE_FILE).read_text()))
        except (OSError, ValueError):
            return None

    def env(self, log_server_port: int) -> dict[str, str]:
        """The components' environment: this process's without Airflow/Perilflow settings, plus ours."""
        values = self.secrets()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PERILFLOW_"))}
        env.update(airflow_env(
            home=self.airflow_home, port=self.port, executor="LocalExecutor", parallelism=self.parallelism,
            sql_alchemy_conn=f"sqlite:///{self.airflow_home / 'airflow.db'}", secret_key=values["secret_key"],
            jwt_secret=values["jwt_secret"], log_server_port=log_server_port))
        env.update({
            "PERILFLOW_DATABASE_URL": self.product_db_url,
            "PERILFLOW_STORAGE_URL": f"file://{self.storage}",
            "PERILFLOW_MODEL_ROOT": str(self.models),
            "PERILFLOW_BACKEND": "local",
            "PERILFLOW_RETRY_DELAY": "2",
            "PERILFLOW_API_URL": self.url,
            "PERILFLOW_AIRFLOW_URL": self.url,
            "PERILFLOW_API_USER": ADMIN_USER,
            "PERILFLOW_API_PASSWORD": values["admin_password"],
        })
        return env

    # ------------------------------------------------------------------ lifecycle

    def running(self) -> dict[str, int]:
        """The components of a started platform that are still alive, by name."""
        state = self.state() or {}
        return {name: pid for name, pid in (state.get("pids") or {}).items() if _alive(int(pid))}

    def start(self, timeout: float = 300, progress: Any = None) -> dict[str, Any]:
        """Start the platform unless it runs; wait until healthy with the DAGs parsed. Returns the state."""
        say = progress or (lambda message: None)
        alive = self.running()
        if alive and len(alive) == len(COMPONENTS):
            state = self.state() or {}
            self.port = int(state.get("port", self.port))
            say(f"platform already running at {self.url}")
            self.wait_ready(time.monotonic() + timeout)
            return state
        if alive:
            say(f"restarting: only {', '.join(sorted(alive))} of {', '.join(COMPONENTS)} are running")
            self.stop()
        if not _port_free(self.port):
            raise PlatformError(f"port {self.port} on 127.0.0.1 is in use by another program; stop it or start "
                                f"with --port N (or PERILFLOW_PORT=N)")
        t0 = time.monotonic()
        for folder in (self.airflow_home / "plugins", self.storage, self.models, self.reports, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        password = self.secrets()["admin_password"]
        _write_private(self.airflow_home / "passwords.json", {ADMIN_USER: password})
        env = self.env(_free_port())
        say("migrating the Airflow metadata DB (SQLite) and the product DB")
        airflow = str(Path(sys.executable).with_name("airflow"))
        result = subprocess.run([airflow, "db", "migrate"], env=env, cwd=self.home, capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise PlatformError(f"`airflow db migrate` failed ({result.returncode}): {result.stderr[-2000:]}")
        from perilflow.plugins.db.migrate import migrate

        migrate(self.product_db_url)
        pids: dict[str, int] = {}
        for name in COMPONENTS:
            with open(self.logs / f"{name}.log", "ab") as log:
                args = [airflow, name] + (["--host", "127.0.0.1", "--port", str(self.port)]
                                          if name == "api-server" else [])
                process = subprocess.Popen(args, env=env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            pids[name] = process.pid
        state = {"pids": pids, "port": self.port, "url": self.url, "started": time.time(),
                 "parallelism": self.parallelism, "version": perilflow.__version__}
        _write_private(self.home / STATE_FILE, state)
        say(f"started {', '.join(COMPONENTS)}; waiting for them (logs in {self.logs})")
        try:
            self.wait_ready(t0 + timeout)
        except PlatformError:
            self.stop()
            raise
        say(f"platform ready at {self.url} in {time.monotonic() - t0:.0f} s")
        return state

    def _log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, deadline: float) -> None:
        """Wait until Airflow reports every component healthy and the workflow DAGs are registered."""
        import httpx

        last: Any = None
        token = None
        while time.monotonic() < deadline:
            dead = [name for name in COMPONENTS if name not in self.running()]
            if dead:
                tails = "\n".join(f"--- {name} ---\n{self._log_tail(name)}" for name in dead)
                raise PlatformError(f"{', '.join(dead)} exited; see {self.logs}:\n{tails}")
            try:
                healthy, last = components_healthy(self.url)
                if healthy:
                    token = token or self.token()
                    headers = {"Authorization": f"Bearer {token}"}
                    missing = [d for d in WORKFLOW_DAGS
                               if httpx.get(f"{self.url}/api/v2/dags/{d}", headers=headers, timeout=5).status_code
                               != 200]
                    if not missing:
                        return
                    last = f"DAGs not parsed yet: {missing}"
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise PlatformError(f"the platform did not become ready in time (last: {last}); see {self.logs}")

    def token(self) -> str:
        """An Airflow JWT for the admin user."""
        import httpx

        reply = httpx.post(f"{self.url}/auth/token", timeout=10,
                           json={"username": ADMIN_USER, "password": self.secrets()["admin_password"]})
        if reply.status_code not in (200, 201):
            raise PlatformError(f"login as {ADMIN_USER} refused ({reply.status_code}); "
                                f"the password is in {self.home / SECRETS_FILE}")
        return str(reply.json()["access_token"])

    def stop(self, grace: float = 20) -> list[str]:
        """End every component's process group (SIGTERM, then SIGKILL after ``grace`` s). Returns what ran."""
        state = self.state() or {}
        pids: Mapping[str, int] = state.get("pids") or {}
        stopped = []
        for name, pid in pids.items():
            if _alive(int(pid)):
                stopped.append(name)
                try:
                    os.killpg(int(pid), signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(int(pid)) for pid in pids.values()):
            time.sleep(0.2)
            for pid in pids.values():  # reap our own children (a platform started by this process)
                try:
                    os.waitpid(int(pid), os.WNOHANG)
                except ChildProcessError:
                    pass
        for pid in pids.values():
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        (self.home / STATE_FILE).unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        """What runs and whether the api-server answers."""
        import httpx

        state = self.state()
        if state:
            self.port = int(state.get("port", self.port))
        alive = self.running()
        health: Any = None
        if alive.get("api-server"):
            try:
                health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError) as exc:
                health = f"not answering: {exc}"
        return {"home": str(self.home), "url": self.url if state else None, "components": alive,
                "stopped": [c for c in COMPONENTS if c not in alive] if state else list(COMPONENTS),
                "health": health}
