"""Latency of ``GET /perilflow/v2/analyses/`` with 10,000 analyses in the product DB, at a fixed request rate.

The app is the plugin's (``create_app``), mounted at ``/perilflow`` in a parent FastAPI app as
Airflow's api-server mounts it, served by uvicorn (one worker, its own process) on loopback.
Airflow's user dependency is overridden by a fixed admin user (no JWT check; admins see
every analysis, the largest listing) and the workflow gateway is the in-memory fake (the
finished analyses never ask it; 1% of them are running and do).

The load is open-loop: requests are sent on a fixed schedule (``--rate`` per second for
``--duration`` seconds) whatever the replies do, and each latency is measured from the
request's scheduled time, so a slow server is not hidden by a client that waits for it
(coordinated omission). Each scenario runs after ``--warmup`` seconds of the same load. The
client is a small asyncio HTTP/1.1 client over 64 keep-alive connections (httpx's took more
CPU than the server). The server runs ``--workers`` uvicorn processes (Airflow's api-server
has ``[api] workers``).

    python -m benchmarks.api [--db sqlite|postgresql] [--analyses 10000] [--rate 200] [--duration 20]

Results (p50/p90/p99/max, errors, achieved rate, the machine's load) go to
``benchmarks/results/api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.harness import PG, free_port, pg_execute

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api.json"
STATUSES = ["RUN_COMPLETED"] * 60 + ["READY"] * 15 + ["RUN_ERROR"] * 8 + ["NEW"] * 8 + ["RUN_CANCELLED"] * 4 + \
    ["INPUTS_GENERATION_ERROR"] * 4 + ["RUN_STARTED"]


# ----------------------------------------------------------------------------- the server side


class _Admin:
    def get_name(self) -> str:
        return "bench"

    def get_id(self) -> str:
        return "bench"

    role = "admin"


async def _admin() -> _Admin:
    return _Admin()


def build_app(db_url: str, storage: str) -> Any:
    """The plugin's app, mounted at /perilflow, with the fixed admin user and the fake gateway."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import FastAPI

    from perilflow.plugins.api.app import create_app
    from perilflow.plugins.api.gateway import FakeGateway, RunInfo
    from perilflow.plugins.settings import ApiSettings

    class Running(FakeGateway):
        def run_info(self, dag_id: str, run_id: str) -> RunInfo:
            return RunInfo("running")

    app = create_app(ApiSettings(database_url=db_url, storage_url=storage), Running())
    app.dependency_overrides[get_user] = _admin
    root = FastAPI()
    root.mount("/perilflow", app)
    return root


def app_from_env() -> Any:
    """uvicorn's factory for several workers: the DB and storage from PERILFLOW_BENCH_DB / _STORAGE."""
    import logging

    logging.disable(logging.INFO)
    return build_app(os.environ["PERILFLOW_BENCH_DB"], os.environ["PERILFLOW_BENCH_STORAGE"])


def serve(db_url: str, storage: str, port: int, workers: int = 1) -> None:
    """uvicorn on loopback, ``workers`` processes (as the api-server's ``[api] workers``)."""
    import uvicorn

    os.environ.update(PERILFLOW_BENCH_DB=db_url, PERILFLOW_BENCH_STORAGE=storage)
    uvicorn.run("benchmarks.api:app_from_env", factory=True, host="127.0.0.1", port=port, workers=workers,
                log_level="warning", access_log=False)


# ----------------------------------------------------------------------------- the product DB


def fill(db_url: str, n: int) -> None:
    """A migrated product DB with one model, 100 portfolios and ``n`` analyses (settings included)."""
    from sqlalchemy import insert

    from perilflow.plugins.db import make_engine
    from perilflow.plugins.db.migrate import migrate
    from perilflow.plugins.db.models import Analysis, Model, Portfolio, utcnow

    migrate(db_url)
    engine = make_engine(db_url)
    settings = json.loads((ROOT.parent / "shared" / "piwind" / "analysis_settings" / "ord_all_outputs_s10.json")
                          .read_text()) if (ROOT.parent / "shared" / "piwind").exists() else {"version": 3}
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(Model), [{"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1",
                                      "created": now, "modified": now, "deleted": False, "run_mode": "V2"}])
        conn.execute(insert(Portfolio), [{"name": f"portfolio {i}", "created": now, "modified": now,
                                          "validation_status": "NONE"} for i in range(100)])
        rows = []
        for i in range(n):
            state = STATUSES[i % len(STATUSES)]
            done = state not in ("NEW",)
            rows.append({"name": f"analysis {i}", "created": now, "modified": now, "portfolio_id": 1 + i % 100,
                         "model_id": 1, "status": state, "run_mode": "V2", "priority": 4, "settings": settings,
                         "task_started": now if done else None, "task_finished": now if done else None,
                         "dag_id": "perilflow_generate_and_run" if done else None,
                         "run_id": f"analysis-{i + 1}-generate-and-run-{i:08x}" if done else None,
                         "run_uuid": f"{i:016x}" if done else None,
                         "input_file": f"file:///s/analysis-{i + 1}_files-x/input.tar.gz" if done else None,
                         "output_file": f"file:///s/analysis-{i + 1}_losses-x/output.tar.gz"
                         if state == "RUN_COMPLETED" else None})
        for start in range(0, n, 2000):
            conn.execute(insert(Analysis), rows[start:start + 2000])
    engine.dispose()


# ----------------------------------------------------------------------------- the load


#: one request of an open-loop run: (route label, the raw HTTP/1.1 request, the status code expected)
Request = tuple[str, bytes, int]
#: what :func:`open_loop` returns: latencies and errors per route label, the first reply's size, the wall time
Outcome = tuple[dict[str, list[float]], dict[str, dict[str, int]], list[int], float]


def http_request(method: str, host: str, port: int, target: str, body: Any = None) -> bytes:
    """A raw HTTP/1.1 request (JSON body when given) for :func:`open_loop`."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return (head + "\r\n").encode() + data


async def open_loop(host: str, port: int, rate: float, duration: float, request_for: Callable[[int], Request],
                    connections: int = 64) -> Outcome:
    """Send ``request_for(i)`` for i = 0, 1, ... at ``rate`` per second for ``duration`` s, whatever the replies do.

    A small HTTP/1.1 client on asyncio streams: httpx's async client took more CPU than the
    server under test (60% vs 29% of a core at 200 req/s), so the client, not the server,
    set the figures. A dispatcher puts each request on a queue at its scheduled time; the
    ``connections`` keep-alive sockets take them in turn; a latency runs from the scheduled
    time to the last byte. Returns, per route label, the latencies (s) of the replies with the
    expected status and the errors by kind (unexpected status code or exception name), the
    size of the first reply, and the wall time.
    """
    interval, count = 1.0 / rate, int(rate * duration)
    latencies: dict[str, list[float]] = {}
    errors: dict[str, dict[str, int]] = {}
    sizes: list[int] = []
    queue: asyncio.Queue[tuple[float, Request] | None] = asyncio.Queue()

    def error(label: str, kind: str) -> None:
        errors.setdefault(label, {})[kind] = errors.get(label, {}).get(kind, 0) + 1

    async def connection() -> None:
        reader = writer = None
        while (item := await queue.get()) is not None:
            scheduled, (label, request, expected) = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status_code = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if status_code != expected:
                    error(label, str(status_code))
                    continue
                latencies.setdefault(label, []).append(time.perf_counter() - scheduled)
                if not sizes:
                    sizes.append(len(body))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                error(label, type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    t0 = time.perf_counter()
    for i in range(count):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, request_for(i)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, errors, sizes, time.perf_counter() - t0


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds."""
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2) if ordered else None

    return {"p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else None}


async def _load(url: str, rate: float, duration: float, connections: int = 64) -> dict[str, Any]:
    """Open-loop GETs of ``url``: ``rate`` per second for ``duration`` s over ``connections`` keep-alive sockets."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = ("GET", http_request("GET", host, port, parts.path + (f"?{parts.query}" if parts.query else "")), 200)
    latencies, errors, sizes, wall = await open_loop(host, port, rate, duration, lambda i: request, connections)
    ok = latencies.get("GET", [])
    return {"url": url, "rate_target": rate, "duration_s": duration, "requests": int(rate * duration),
            "ok": len(ok), "errors": errors.get("GET", {}), "achieved_rate": round(len(ok) / wall, 1),
            "wall_s": round(wall, 1), **percentiles(ok), "reply_bytes": sizes[0] if sizes else None}


def _wait_up(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not answer in time")


@contextmanager
def served(db: str, n: int, workers: int, prefix: str = "perilflow-bench-api-") -> Iterator[dict[str, Any]]:
    """A product DB (``sqlite`` or a throwaway ``postgresql`` one) holding ``n`` analyses, served by the app.

    Yields ``{"port", "fill_s"}`` once ``healthcheck/`` answers; on exit stops the server, drops the
    database and removes the temporary folder.
    """
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    pg_name = None
    if db == "postgresql":
        pg_name = f"perilflow_bench_{secrets.token_hex(4)}"
        pg_execute(f'CREATE DATABASE "{pg_name}"')
        db_url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{pg_name}"
    else:
        db_url = f"sqlite:///{tmp / 'perilflow.db'}"
    process = None
    try:
        t0 = time.monotonic()
        fill(db_url, n)
        fill_s = time.monotonic() - t0
        port = free_port()
        env = {**os.environ, "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.api", "--serve", db_url, "--port", str(port),
                                    "--storage", f"file://{tmp / 'storage'}", "--workers", str(workers)],
                                   cwd=ROOT, env=env)
        _wait_up(f"http://127.0.0.1:{port}/perilflow/healthcheck/", process)
        yield {"port": port, "fill_s": fill_s}
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if pg_name:
            pg_execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def run(db: str, n: int, rate: float, duration: float, warmup: float, scenarios: list[tuple[str, str, float]],
        workers: int = 1) -> dict[str, Any]:
    with served(db, n, workers) as server:
        base = f"http://127.0.0.1:{server['port']}/perilflow"
        results = []
        for label, query, scenario_rate in scenarios:
            url = f"{base}/v2/analyses/{query}"
            asyncio.run(_load(url, scenario_rate, warmup))
            load_before = os.getloadavg()[0]
            result = asyncio.run(_load(url, scenario_rate, duration))
            result.update(scenario=label, db=db, workers=workers, load_1m_before=round(load_before, 2),
                          load_1m_after=round(os.getloadavg()[0], 2))
            print(json.dumps(result), flush=True)  # noqa: T201
            results.append(result)
        return {"db": db, "workers": workers, "analyses": n, "fill_s": round(server["fill_s"], 1),
                "scenarios": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--full-rate", type=float, default=2,
                        help="rate of the unpaginated full list (10,000 analyses per reply)")
    parser.add_argument("--note", default="")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to run, e.g. 1,2")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.storage, args.port, int(args.workers))
        return 0
    scenarios = [("first page (limit=10)", "?limit=10", args.rate),
                 ("first page (limit=100)", "?limit=100", args.rate),
                 ("page in the middle (limit=100&offset=5000)", "?limit=100&offset=5000", args.rate),
                 ("status filter, first page (status=RUN_COMPLETED&limit=10)", "?status=RUN_COMPLETED&limit=10",
                  args.rate),
                 ("full list, no pagination (10,000 analyses)", "", args.full_rate)]
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    report = {"benchmark": "api", "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "commit": commit.stdout.strip(), "python": platform.python_version(), "cpus": os.cpu_count(),
              "rate": args.rate, "duration_s": args.duration, "note": args.note,
              "load_1m_start": round(os.getloadavg()[0], 2),
              "runs": [run(db, args.analyses, args.rate, args.duration, args.warmup, scenarios, int(w))
                       for db in dbs for w in args.workers.split(",")]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
