"""A real Airflow for the integration tier and the orchestration benchmark.

:class:`AirflowPlatform` starts, in a private ``AIRFLOW_HOME`` (a temporary folder):

* a fresh PostgreSQL database ``perilflow_it_<random>`` (created with psycopg2, dropped at
  the end), migrated by ``airflow db migrate``;
* ``airflow api-server`` on a free port of 127.0.0.1, ``airflow scheduler`` and
  ``airflow dag-processor`` reading ``/work/main/dags`` (this repository's ``dags/``);
* with ``executor="CeleryExecutor"``, Celery workers (``airflow celery worker``) on a Redis
  database of the local server, results in the same PostgreSQL database.

Each component runs in its own process group with its output in ``$AIRFLOW_HOME/logs``;
:meth:`AirflowPlatform.stop` ends every group and every descendant process, then drops the
database. Every wait is bounded. No pytest here: the benchmark uses it too.

The simple auth manager has one user, ``admin`` (password ``admin``, from the passwords
file), which is also the service account the failure callback uses to stop a failed run's
siblings (``PERILFLOW_API_URL``/``_USER``/``_PASSWORD`` in the components' env).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from perilflow.platform import ADMIN_USER, airflow_env, components_healthy
from tests.conftest import free_port
from tests.ord_checks import storage_path  # noqa: F401 - part of the harness's interface

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
WORKER = str(Path(sys.executable).with_name("perilflow-worker"))
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
USER, PASSWORD = ADMIN_USER, "admin"
FINISHED_RUN = ("success", "failed")
FINISHED_TI = ("success", "failed", "skipped", "upstream_failed", "removed")


class PlatformError(RuntimeError):
    """The platform did not start, or a run did not finish in time (the message holds the logs' ends)."""


def services_answer() -> str | None:
    """None when PostgreSQL and Redis answer on 127.0.0.1, else what is missing."""
    import psycopg2

    missing = []
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **PG).close()
    except psycopg2.Error as exc:
        missing.append(f"PostgreSQL at {PG['host']}:{PG['port']} ({str(exc).strip()})")
    try:
        with socket.create_connection(REDIS, timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                missing.append(f"Redis at {REDIS[0]}:{REDIS[1]} (no PONG)")
    except OSError as exc:
        missing.append(f"Redis at {REDIS[0]}:{REDIS[1]} ({exc})")
    return "; ".join(missing) or None


def pg_execute(sql: str) -> None:
    """Run one statement on the server's ``postgres`` database (autocommit: CREATE/DROP DATABASE)."""
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def piwind_conf(piwind: Path, analysis_id: int, **extra: Any) -> dict[str, Any]:
    """A generate_and_run conf for PiWind loc10 (model paths relative to ``PERILFLOW_MODEL_ROOT``)."""
    exposure = piwind / "exposure_data"
    model = {"id": "OasisLMF/PiWind/1", "model_data_dir": "model_data/PiWind",
             "lookup_config_json": "keys_data/PiWind/lookup_config.json", "lookup_data_dir": "keys_data/PiWind",
             "model_settings_json": "meta-data/model_settings.json", "gul_alloc_rule": 1}
    model.update(extra.pop("model", {}))
    return {
        "analysis_id": analysis_id,
        "model": model,
        "portfolio": {"location": str(exposure / "SourceLocOEDPiWind10.csv"),
                      "account": str(exposure / "SourceAccOEDPiWind.csv"),
                      "ri_info": str(exposure / "SourceReinsInfoOEDPiWind.csv"),
                      "ri_scope": str(exposure / "SourceReinsScopeOEDPiWind.csv")},
        "analysis_settings": json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json").read_text()),
        **extra,
    }


def losses_conf(conf: Mapping[str, Any], input_file: str, **extra: Any) -> dict[str, Any]:
    """The losses-only conf for the inputs of a generate_and_run conf."""
    out = {k: v for k, v in conf.items() if k not in ("portfolio", "chunking")}
    out["input_file"] = input_file
    out.update(extra)
    return out


def wrapper_worker(folder: Path, name: str, *, sleep: Mapping[str, float] | None = None,
                   fail_chunks: Iterable[int] = (), fail_while: Path | None = None, fail_after: float = 0,
                   hog_mb: Mapping[str, int] | None = None, hold_retries: Mapping[str, Path] | None = None) -> Path:
    """A worker entry point that sleeps before some steps and always fails some loss chunks.

    ``sleep`` maps a step name (``generate-losses-chunk``, ...) to seconds slept before the
    real ``perilflow-worker`` is exec'd; a loss chunk whose index is in ``fail_chunks``
    exits 1 on every attempt (``attempts-<i>`` in ``folder`` counts them), or, with
    ``fail_while``, only while that file exists (exiting after ``fail_after`` seconds). ``hog_mb``
    maps a step name to megabytes the step allocates (and touches, 16 MiB at a time,
    ``hog-<pid>`` in ``folder`` noting how far it got) before the real worker starts.
    ``hold_retries`` maps a step name to a file: a retry of that step (the journal holds an
    earlier start of the same step and chunk index) waits until the file exists (at most 150 s),
    so a test decides when retries may go on rather than racing them. Every
    start is appended to ``journal`` in ``folder`` (pid, step, chunk index). The script's path
    (inside ``folder``) is in the command line of the process, so tests find it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"""#!{sys.executable}
import json, os, pathlib, sys, time
step, params = sys.argv[1], json.loads(sys.argv[3])
folder = pathlib.Path({str(folder)!r})
me = f"{{step}} {{params.get('chunk_index', -1)}}"
earlier = (folder / "journal").read_text().splitlines() if (folder / "journal").exists() else []
with open(folder / "journal", "a") as journal:
    journal.write(f"{{os.getpid()}} {{me}}\\n")
hold = {{k: pathlib.Path(v) for k, v in {({k: str(v) for k, v in (hold_retries or {}).items()})!r}.items()}}.get(step)
if hold is not None and any(line.split(" ", 1)[1] == me for line in earlier):
    deadline = time.monotonic() + 150
    while not hold.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
failing = {fail_while is None!r} or pathlib.Path({str(fail_while)!r}).exists()
if step == "generate-losses-chunk" and params["chunk_index"] in {sorted(set(fail_chunks))!r} and failing:
    counter = pathlib.Path({str(folder)!r}) / f"attempts-{{params['chunk_index']}}"
    attempts = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(attempts + 1))
    time.sleep({float(fail_after)!r})
    print(f"simulated failure of chunk {{params['chunk_index']}}, attempt {{attempts + 1}}", file=sys.stderr)
    sys.exit(1)
time.sleep({dict(sleep or {})!r}.get(step, 0))
hog, held = {dict(hog_mb or {})!r}.get(step, 0), []
while len(held) * 16 < hog:
    held.append(b"x" * (16 << 20))  # filled, so the pages are resident
    # written whole then renamed: a kill between truncating and writing left an empty file
    (folder / f".hog-{{os.getpid()}}.tmp").write_text(str(len(held) * 16))
    os.replace(folder / f".hog-{{os.getpid()}}.tmp", folder / f"hog-{{os.getpid()}}")
    time.sleep(0.02)
os.execv({WORKER!r}, [{WORKER!r}, *sys.argv[1:]])
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


class AirflowPlatform:
    """Airflow components on PostgreSQL, started by :meth:`start` and ended by :meth:`stop`."""

    def __init__(self, *, executor: str = "LocalExecutor", parallelism: int = 4, celery_workers: int = 2,
                 celery_concurrency: int = 2, env: Mapping[str, str] | None = None, name: str = "it",
                 keep_home: bool = False) -> None:
        self.executor = executor
        self.parallelism = parallelism
        self.celery_workers = celery_workers if executor == "CeleryExecutor" else 0
        self.celery_concurrency = celery_concurrency
        self.extra_env = dict(env or {})
        self.keep_home = keep_home
        token = secrets.token_hex(4)
        self.database = f"perilflow_{name}_{token}"
        self.home = Path(tempfile.mkdtemp(prefix=f"perilflow-{name}-{token}-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage = self.home / "storage"
        self.redis_db = 1 + secrets.randbelow(15)
        self.queue = f"perilflow_{name}_{token}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.celery_hostnames: list[str] = []
        self._db_created = False
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self.timings: dict[str, float] = {}

    # ---------------------------------------------------------------- environment

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.database}"

    def perilflow_env(self) -> dict[str, str]:
        """The platform settings (``PERILFLOW_*``) of every component; tests reuse them for cancel_run."""
        from tests.conftest import shared_dir

        env = {
            "PERILFLOW_STORAGE_URL": f"file://{self.storage}",
            "PERILFLOW_MODEL_ROOT": str(shared_dir() / "piwind"),
            "PERILFLOW_BACKEND": "local",
            "PERILFLOW_RETRIES": "2",
            "PERILFLOW_RETRY_DELAY": "1",
            "PERILFLOW_API_URL": self.url,
            "PERILFLOW_API_USER": USER,
            "PERILFLOW_API_PASSWORD": PASSWORD,
        }
        env.update({k: v for k, v in self.extra_env.items() if k.startswith("PERILFLOW_")})
        return env

    def env(self) -> dict[str, str]:
        """The components' environment: this process's, minus any Airflow/Perilflow setting, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PERILFLOW_"))}
        env.update(airflow_env(
            home=self.home, port=self.port, executor=self.executor, parallelism=self.parallelism,
            sql_alchemy_conn=self.db_url, secret_key="perilflow-integration-" + self.database,
            jwt_secret="perilflow-integration-jwt-" + self.database, log_server_port=free_port(),
            dags=REPO_ROOT / "dags"))
        env.update({
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
        })
        if self.executor == "CeleryExecutor":
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND":
                    f"db+postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{self.database}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery_concurrency),
                "AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "False",
            })
        env.update(self.perilflow_env())
        env.update({k: v for k, v in self.extra_env.items() if not k.startswith("PERILFLOW_")})
        return env

    def worker_env(self, name: str) -> dict[str, str]:
        """The env of a Celery worker: its own log-server port, and ``name`` as the hostname its tasks report.

        Both workers run on this machine, so the task instances' ``hostname`` field (what
        ``[core] hostname_callable`` returns in the task's process) would be the same for both;
        a one-line callable returning ``PERILFLOW_IT_HOSTNAME`` tells them apart.
        """
        module = self.home / "pythonpath" / "perilflow_it_hostname.py"
        module.parent.mkdir(exist_ok=True)
        module.write_text("import os\n\n\ndef hostname():\n    return os.environ['PERILFLOW_IT_HOSTNAME']\n")
        env = self.env()
        env.update({
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "perilflow_it_hostname.hostname",
            "PERILFLOW_IT_HOSTNAME": name,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(module.parent), env.get("PYTHONPATH")])),
        })
        return env

    # ---------------------------------------------------------------- processes

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([AIRFLOW, *args], env=dict(env or self.env()), cwd=self.home,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def airflow(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this platform (output captured as text)."""
        result = subprocess.run([AIRFLOW, *args], env=self.env(), cwd=self.home, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise PlatformError(f"airflow {' '.join(args)} exited {result.returncode}:\n"
                                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name, lines)}" for name in self.processes)

    def start(self, timeout: float = 240) -> AirflowPlatform:
        """Create and migrate the database, start the components, wait until the DAGs are parsed."""
        t0 = time.monotonic()
        (self.home / "logs").mkdir(parents=True)
        (self.home / "plugins").mkdir()
        self.storage.mkdir()
        (self.home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
        pg_execute(f'CREATE DATABASE "{self.database}"')
        self._db_created = True
        try:
            if self.executor == "CeleryExecutor":
                self._flush_redis()
            self.airflow("db", "migrate", timeout=timeout)
            self.timings["migrate"] = time.monotonic() - t0
            self._spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port)])
            self._spawn("scheduler", ["scheduler"])
            self._spawn("dag-processor", ["dag-processor"])
            for i in range(self.celery_workers):
                hostname = f"{self.queue}-w{i + 1}@localhost"
                env = self.worker_env(f"celery-w{i + 1}")
                self._spawn(f"celery-worker-{i + 1}", ["celery", "worker", "--celery-hostname", hostname,
                                                       "--queues", self.queue, "--concurrency",
                                                       str(self.celery_concurrency), "--without-gossip",
                                                       "--without-mingle"], env)
                self.celery_hostnames.append(hostname)
            self.wait_healthy(deadline=t0 + timeout)
            self.timings["healthy"] = time.monotonic() - t0
            self.wait_dags(("perilflow_input_generation", "perilflow_losses_generation",
                            "perilflow_generate_and_run"), deadline=t0 + timeout)
            if self.celery_workers:
                self.wait_celery_workers(deadline=t0 + timeout)
            self.timings["ready"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str, *, tree: bool = True) -> list[int]:
        """SIGKILL a component; with ``tree``, every process it started too, as a crash of its container would.

        The LocalExecutor's task processes run in sessions of their own, so killing the
        scheduler's process group alone would leave them (and their model steps) running.
        Returns the pids killed.
        """
        import psutil

        process = self.processes[name]
        victims = [psutil.Process(process.pid)]
        if tree:
            victims += victims[0].children(recursive=True)
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        process.wait(10)
        return [victim.pid for victim in victims]

    def restart(self, name: str) -> subprocess.Popen:
        """Start a component (``scheduler``, ``dag-processor``, ``api-server``) again, after :meth:`kill`."""
        args = {"api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]}.get(name, [name])
        if self.processes[name].poll() is None:
            raise PlatformError(f"{name} is still running; kill it first")
        return self._spawn(name, args)

    def _check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise PlatformError(f"Airflow components exited: {dead}\n{self.logs()}")

    def wait_healthy(self, deadline: float) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                healthy, last = components_healthy(self.url)
                if healthy:
                    return
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise PlatformError(f"Airflow not healthy in time (last health: {last})\n{self.logs()}")

    def wait_dags(self, dag_ids: Iterable[str], deadline: float) -> None:
        missing = set(dag_ids)
        while time.monotonic() < deadline:
            self._check_alive()
            for dag_id in sorted(missing):
                reply = self.request("GET", f"/api/v2/dags/{dag_id}", check=False)
                if reply.status_code == 200:
                    missing.discard(dag_id)
            if not missing:
                return
            time.sleep(1)
        errors = self.request("GET", "/api/v2/importErrors", check=False).text[:3000]
        raise PlatformError(f"DAGs not parsed in time: {sorted(missing)}; import errors: {errors}\n{self.logs()}")

    def wait_celery_workers(self, deadline: float) -> None:
        pending = set(self.celery_hostnames)
        while pending and time.monotonic() < deadline:
            self._check_alive()
            for hostname in sorted(pending):
                name = f"celery-worker-{self.celery_hostnames.index(hostname) + 1}"
                if " ready." in self.log_tail(name, 200):
                    pending.discard(hostname)
            time.sleep(1)
        if pending:
            raise PlatformError(f"Celery workers not ready in time: {sorted(pending)}\n{self.logs()}")

    def celery_results(self) -> int:
        """Task results the Celery workers stored in the platform's database (``celery_taskmeta``)."""
        import psycopg2

        conn = psycopg2.connect(dbname=self.database, connect_timeout=5, **PG)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def _flush_redis(self) -> None:
        import redis

        redis.Redis(host=REDIS[0], port=REDIS[1], db=self.redis_db, socket_timeout=5).flushdb()

    def descendants(self) -> list[Any]:
        """Every live process started by a component (task runners, model steps, ...)."""
        import psutil

        out = []
        for process in self.processes.values():
            try:
                root = psutil.Process(process.pid)
                out += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return out

    def stop(self, grace: float = 15) -> None:
        """End every component and its descendants (SIGTERM, then SIGKILL), then drop the database."""
        import psutil

        tree = self.descendants()
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for leftover in tree + self.strays():
            try:
                leftover.kill()
            except psutil.Error:
                pass
        psutil.wait_procs([p for p in tree if p.is_running()], timeout=5)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._db_created:
            try:
                pg_execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                self._db_created = False
            except Exception as exc:  # noqa: BLE001 - report, but finish the teardown
                print(f"could not drop {self.database}: {exc}", file=sys.stderr)  # noqa: T201
        if self.celery_workers:
            try:
                self._flush_redis()
            except Exception:  # noqa: BLE001
                pass
        if not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def strays(self, marker: str | None = None) -> list[Any]:
        """Live processes whose command line names this platform's home (model steps, wrappers)."""
        import psutil

        marker = marker or str(self.home)
        out = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info.get("cmdline") or [])
            if marker in cmdline and process.pid != os.getpid():
                out.append(process)
        return out

    def __enter__(self) -> AirflowPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- REST API

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    def token(self) -> str:
        if self._token is None:
            reply = self.client.post("/auth/token", json={"username": USER, "password": PASSWORD})
            if reply.status_code != 201:
                raise PlatformError(f"POST /auth/token: {reply.status_code} {reply.text[:300]}")
            self._token = reply.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> httpx.Response:
        reply = self.client.request(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
        if check and reply.status_code >= 300:
            raise PlatformError(f"{method} {path}: {reply.status_code} {reply.text[:500]}")
        return reply

    def api(self):
        """A :class:`perilflow.operators.airflow_api.AirflowApi` on this platform, as admin."""
        from perilflow.operators.airflow_api import AirflowApi

        return AirflowApi(self.url, USER, PASSWORD)

    def trigger(self, dag_id: str, conf: Mapping[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or f"it-{secrets.token_hex(4)}"
        # the submission time as logical date, as the Perilflow API's AirflowGateway.trigger sets it
        logical_date = datetime.now(UTC).isoformat()
        self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                     json={"dag_run_id": run_id, "logical_date": logical_date, "conf": dict(conf)})
        return run_id

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path, params={"limit": 1000}).json()["task_instances"]

    def tis(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {(ti["task_id"], ti["map_index"]): ti for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/"
                f"xcomEntries/{key}")
        return self.request("GET", path, params={"deserialize": True}).json()["value"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180, states: Iterable[str] = FINISHED_RUN,
                 poll: float = 1.0) -> dict[str, Any]:
        """Poll the run until its state is in ``states``; raise with the TI states and logs after ``timeout``."""
        states = tuple(states)
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in states:
                return run
            self._check_alive()
            time.sleep(poll)
        summary = sorted((ti["task_id"], ti["map_index"], ti["state"]) for ti in self.task_instances(dag_id, run_id))
        raise PlatformError(f"run {dag_id}/{run_id} still {run.get('state')} after {timeout:.0f} s; "
                            f"TIs: {summary}\n{self.logs()}")

    def wait_tis(self, dag_id: str, run_id: str, predicate, timeout: float = 120,
                 poll: float = 0.5) -> dict[tuple[str, int], dict[str, Any]]:
        """Poll the run's TIs until ``predicate(tis)`` is true (bounded)."""
        deadline = time.monotonic() + timeout
        tis: dict[tuple[str, int], dict[str, Any]] = {}
        while time.monotonic() < deadline:
            tis = self.tis(dag_id, run_id)
            if predicate(tis):
                return tis
            self._check_alive()
            time.sleep(poll)
        summary = sorted((k[0], k[1], ti["state"]) for k, ti in tis.items())
        raise PlatformError(f"run {dag_id}/{run_id}: condition not met after {timeout:.0f} s; TIs: {summary}")

    def ti_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        reply = self.request("GET", path, params={"map_index": map_index}, check=False)
        if reply.status_code != 200:
            return f"<{reply.status_code}>"
        lines = []
        for item in reply.json().get("content") or []:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            lines.append(str(item.get("event", item)))
            # "Task failed with exception": the exception's text is in error_detail, not in the event
            lines += [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in item.get("error_detail") or []
                      if isinstance(e, dict)]
        return "\n".join(lines)


def direct_losses(input_file: str, conf: Mapping[str, Any], n_chunks: int, output_uri: str,
                  model_root: Path, parallel: int = 1) -> dict[str, Any]:
    """The losses steps a v2 run executes, run here without Airflow.

    The same ``perilflow-worker`` commands and params (minus the pod's runtime settings) as
    the local backend runs: prepare, the ``n_chunks`` chunks (``parallel`` at a time), merge.
    Returns each step's wall time, their sum and the wall time of the whole. This is the
    kernel's own time of a run, and its output is the reference an Airflow run must equal
    byte for byte.
    """
    from concurrent.futures import ThreadPoolExecutor

    folder = output_uri.rsplit("/", 1)[0]
    run_directory = f"{folder}/run_directory.tar.gz"
    model = conf["model"]
    prepare = {"inputs": input_file, "analysis_settings": conf["analysis_settings"],
               "model_data_dir": model["model_data_dir"], "model_settings_json": model.get("model_settings_json"),
               "output": run_directory}
    for rule in ("gul_alloc_rule", "il_alloc_rule", "ri_alloc_rule"):
        if model.get(rule) is not None:
            prepare[rule] = int(model[rule])
    works = [f"{folder}/work-{i}.tar.gz" for i in range(n_chunks)]
    chunks = [("generate-losses-chunk", {"run_directory": run_directory, "chunk_index": i, "n_chunks": n_chunks,
                                         "output": uri}) for i, uri in enumerate(works)]
    merge = ("generate-losses-output", {"run_directory": run_directory, "works": works, "output": output_uri})
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "NUMBA_CACHE_DIR") if k in os.environ}
    env["PERILFLOW_MODEL_ROOT"] = str(model_root)

    def run(step: tuple[str, dict[str, Any]]) -> tuple[str, float]:
        name, params = step
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="perilflow-direct-") as scratch:
            result = subprocess.run([WORKER, name, "--params", json.dumps(params, sort_keys=True)], env=env,
                                    cwd=scratch, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise PlatformError(f"{name} exited {result.returncode}: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        return name, time.monotonic() - t0

    t0 = time.monotonic()
    times = [run(("prepare-losses-generation-directory", prepare))]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        times += list(pool.map(run, chunks))
    times.append(run(merge))
    return {"output": output_uri, "steps": times, "kernel_s": sum(t for _, t in times),
            "wall_s": time.monotonic() - t0}


