"""Mixed reads and writes on the API at a fixed rate (issue 8): a bounded run, zero errors expected.

The same server as :mod:`benchmarks.api` (the plugin's app at ``/perilflow`` under uvicorn on
loopback, a fixed admin user, the in-memory workflow gateway, a product DB filled with
``--analyses`` analyses) and the same open-loop client (:func:`benchmarks.api.open_loop`:
requests leave on schedule whatever the replies do; a latency runs from the scheduled time).
Each second's requests are a fixed mix of six routes:

=========================================  ======  =====================================
route                                      share   request
=========================================  ======  =====================================
list analyses                              30%     ``GET v2/analyses/?limit=10&offset=k``
get one analysis                           25%     ``GET v2/analyses/{id}/``
sub-task list                              15%     ``GET v2/analyses/{id}/sub_task_list/``
list portfolios                            10%     ``GET v2/portfolios/?limit=10``
create analysis                            10%     ``POST v2/analyses/`` (201)
post settings                              10%     ``POST v2/analyses/{id}/settings/`` (PiWind's)
=========================================  ======  =====================================

    python -m benchmarks.api_load [--rate 200] [--duration 60] [--db postgresql] [--workers 2]

Results (per route and overall p50/p90/p99/max, errors by kind, achieved rate, the machine's
load before and after) go to ``benchmarks/results/api_load.json``; the exit code is 1 when
any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.api import STATUSES, Request, http_request, open_loop, percentiles, served

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api_load.json"
#: (route label, share in 20ths): 6 + 5 + 3 + 2 + 2 + 2 = 20
MIX = (("list analyses", 6), ("get analysis", 5), ("sub_task_list", 3), ("list portfolios", 2),
       ("create analysis", 2), ("post settings", 2))


def settings_body() -> dict[str, Any]:
    path = ROOT.parent / "shared" / "piwind" / "analysis_settings" / "ord_all_outputs_s10.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"version": 3, "source_tag": "bench", "model_supplier_id": "OasisLMF", "model_name_id": "PiWind",
            "number_of_samples": 10, "gul_output": True, "gul_summaries": [{"id": 1, "eltcalc": True}]}


def requests_for(host: str, port: int, analyses: int) -> Any:
    """``request_for(i)``: the i-th request of the mix (routes interleaved, ids spread over the product DB)."""
    labels = [label for label, share in MIX for _ in range(share)]
    order = [labels[(k * 7) % len(labels)] for k in range(len(labels))]  # interleaved, each label its share
    editable = [i + 1 for i in range(analyses) if STATUSES[i % len(STATUSES)] in ("READY", "NEW", "RUN_COMPLETED")]
    body = settings_body()
    base = "/perilflow/v2"

    def request_for(i: int) -> Request:
        label = order[i % len(order)]
        some = 1 + (i * 7919) % analyses
        if label == "list analyses":
            return label, http_request("GET", host, port, f"{base}/analyses/?limit=10&offset={(i * 13) % 500}"), 200
        if label == "get analysis":
            return label, http_request("GET", host, port, f"{base}/analyses/{some}/"), 200
        if label == "sub_task_list":
            return label, http_request("GET", host, port, f"{base}/analyses/{some}/sub_task_list/"), 200
        if label == "list portfolios":
            return label, http_request("GET", host, port, f"{base}/portfolios/?limit=10"), 200
        if label == "create analysis":
            return label, http_request("POST", host, port, f"{base}/analyses/",
                                       {"name": f"load {i}", "portfolio": 1 + i % 100, "model": 1}), 201
        target = editable[(i * 31) % len(editable)]
        return label, http_request("POST", host, port, f"{base}/analyses/{target}/settings/", body), 200

    return request_for


def run(db: str, analyses: int, rate: float, duration: float, warmup: float, workers: int) -> dict[str, Any]:
    with served(db, analyses, workers, prefix="perilflow-bench-api-load-") as server:
        port = server["port"]
        request_for = requests_for("127.0.0.1", port, analyses)
        asyncio.run(open_loop("127.0.0.1", port, rate, warmup, request_for))
        load_before = os.getloadavg()[0]
        latencies, errors, _, wall = asyncio.run(open_loop("127.0.0.1", port, rate, duration, request_for))
        load_after = os.getloadavg()[0]
    routes = {}
    for label, _ in MIX:
        ok = latencies.get(label, [])
        routes[label] = {"ok": len(ok), "errors": errors.get(label, {}), **percentiles(ok)}
    every = [t for values in latencies.values() for t in values]
    error_count = sum(n for kinds in errors.values() for n in kinds.values())
    return {"db": db, "workers": workers, "analyses": analyses, "rate_target": rate, "duration_s": duration,
            "requests": int(rate * duration), "ok": len(every), "error_count": error_count,
            "achieved_rate": round(len(every) / wall, 1), "wall_s": round(wall, 1), **percentiles(every),
            "routes": routes, "load_1m_before": round(load_before, 2), "load_1m_after": round(load_after, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--analyses", type=int, default=1000, help="analyses in the product DB at the start")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    t0 = time.monotonic()
    result = run(args.db, args.analyses, args.rate, args.duration, args.warmup, args.workers)
    report = {"benchmark": "api_load", "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "commit": commit.stdout.strip(), "python": platform.python_version(), "cpus": os.cpu_count(),
              "note": args.note, "mix": dict(MIX), "total_s": round(time.monotonic() - t0, 1), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps({k: report[k] for k in ("ok", "error_count", "achieved_rate", "p50_ms", "p99_ms")}))  # noqa: T201
    for label, route in report["routes"].items():
        print(f"{label:16s} ok {route['ok']:6d} errors {route['errors']} p50 {route['p50_ms']} ms "  # noqa: T201
              f"p99 {route['p99_ms']} ms")
    print(f"wrote {args.out}")  # noqa: T201
    return 1 if report["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
