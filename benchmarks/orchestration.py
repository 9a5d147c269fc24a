"""Orchestration overhead of a v2 losses run on Airflow's LocalExecutor, PostgreSQL metadata DB.

    .venv/bin/python -m benchmarks.orchestration [--chunks 1,8,32] [--runs 3] [--parallelism 4]
                                                 [--serial-runs 1] [--out PATH]

Starts the integration tier's platform (tests/integration/harness.py: api-server,
scheduler and dag-processor on a fresh PostgreSQL database, LocalExecutor with
``--parallelism`` slots), makes PiWind loc10's input files once through
``perilflow_input_generation``, then for each chunk count triggers
``perilflow_losses_generation`` (run_mode v2, FIXED_CHUNKS) through the REST API ``--runs``
times and measures the wall time from the trigger call to the run's success (polled every
0.2 s; the server's ``end_date - queued_at`` is recorded too).

The kernel's own time is measured without Airflow: the same ``perilflow-worker`` steps
with the same params (prepare, the chunks, merge), as subprocesses, the chunks
``--parallelism`` at a time like the executor's slots. Airflow and direct runs alternate,
so both see the same machine. Overhead = median Airflow wall - median direct wall; goal
(issue 5): at most 10 s + 0.3 s per chunk.

``--serial-runs`` adds runs where every model step goes through a 1-slot pool
(``conf.model.pool``), compared with the direct steps one at a time: the per-step cost of
orchestration when nothing overlaps it. Writes benchmarks/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.inputs_vs_oasislmf import machine
from tests.conftest import shared_dir
from tests.integration.harness import AirflowPlatform, direct_losses, losses_conf, piwind_conf, services_answer

ROOT = Path(__file__).resolve().parents[1]
LOSSES = "perilflow_losses_generation"
MODEL_STEPS = ("prepare-losses-generation-directory", "generate-losses-chunk", "generate-losses-output")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def airflow_run(platform: AirflowPlatform, conf: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Trigger one losses run through REST and time it to success."""
    t0 = time.monotonic()
    run_id = platform.trigger(LOSSES, conf, run_id=f"bench-{secrets.token_hex(4)}")
    deadline = t0 + timeout
    while True:
        run = platform.run(LOSSES, run_id)
        if run["state"] in ("success", "failed"):
            wall = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not finished after {timeout} s")
        time.sleep(0.2)
    if run["state"] != "success":
        raise RuntimeError(f"run {run_id} ended {run['state']}:\n{platform.logs()}")
    tis = platform.task_instances(LOSSES, run_id)
    steps = [ti for ti in tis if ti["task_id"] in MODEL_STEPS and ti["state"] == "success"]
    chunks = [ti for ti in steps if ti["task_id"] == "generate-losses-chunk"]
    return {
        "run_id": run_id,
        "wall_s": round(wall, 3),
        "server_s": round((when(run["end_date"]) - when(run["queued_at"])).total_seconds(), 3),
        "model_step_ti_s": round(sum(ti["duration"] for ti in steps), 3),
        "chunk_ti_s": round(sum(ti["duration"] for ti in chunks), 3),
        "task_instances": len(tis),
        "load_avg": os.getloadavg()[0],
    }


def direct_run(input_file: str, conf: dict[str, Any], n: int, parallel: int, piwind: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="perilflow-bench-direct-") as folder:
        result = direct_losses(input_file, conf, n, f"file://{folder}/output.tar.gz", piwind, parallel=parallel)
    return {"wall_s": round(result["wall_s"], 3), "sum_of_steps_s": round(result["kernel_s"], 3),
            "load_avg": os.getloadavg()[0]}


def summarise(n: int, airflow: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    wall = statistics.median(r["wall_s"] for r in airflow)
    kernel = statistics.median(r["wall_s"] for r in direct)
    goal = 10 + 0.3 * n
    overhead = wall - kernel
    return {"chunks": n, "airflow_wall_median_s": round(wall, 2),
            "airflow_wall_range_s": [min(r["wall_s"] for r in airflow), max(r["wall_s"] for r in airflow)],
            "kernel_wall_median_s": round(kernel, 2),
            "kernel_sum_of_steps_median_s": round(statistics.median(r["sum_of_steps_s"] for r in direct), 2),
            "model_step_ti_median_s": round(statistics.median(r["model_step_ti_s"] for r in airflow), 2),
            "overhead_s": round(overhead, 2), "goal_s": round(goal, 2), "meets_goal": overhead <= goal,
            "airflow_runs": airflow, "direct_runs": direct}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="1,8,32", help="loss chunk counts (comma separated)")
    parser.add_argument("--runs", type=int, default=3, help="runs per chunk count (median)")
    parser.add_argument("--parallelism", type=int, default=4, help="LocalExecutor slots ([core] parallelism)")
    parser.add_argument("--serial-runs", type=int, default=1, help="runs per chunk count through a 1-slot pool")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "orchestration.json")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.chunks.split(",") if x.strip()]
    missing = services_answer()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    piwind = shared_dir() / "piwind"
    info = machine()
    platform = AirflowPlatform(executor="LocalExecutor", parallelism=args.parallelism, name="bench")
    t0 = time.monotonic()
    platform.start()
    try:
        startup = dict(platform.timings)
        print(f"platform ready in {startup['ready']:.1f} s (migrate {startup['migrate']:.1f} s)", flush=True)
        base = piwind_conf(piwind, 900, chunking={"fixed_lookup_chunks": 1})
        inputs_conf = {k: v for k, v in base.items() if k != "analysis_settings"}
        run_id = platform.trigger("perilflow_input_generation", inputs_conf)
        if platform.wait_run("perilflow_input_generation", run_id, timeout=300)["state"] != "success":
            raise RuntimeError(f"input generation failed:\n{platform.logs()}")
        input_file = platform.xcom("perilflow_input_generation", run_id, "record-input-files")["input_file"]

        def conf(n: int, analysis_id: int, **extra: Any) -> dict[str, Any]:
            return losses_conf(base, input_file, analysis_id=analysis_id, run_mode="v2",
                               chunking={"fixed_analysis_chunks": n}, **extra)

        # warm-up (numba caches, first task processes), not counted
        airflow_run(platform, conf(1, 901))
        direct_run(input_file, base, 1, args.parallelism, piwind)
        results: dict[str, Any] = {"parallel": [], "serial": []}
        for n in counts:
            airflow, direct = [], []
            for r in range(args.runs):
                airflow.append(airflow_run(platform, conf(n, 1000 + 10 * n + r)))
                direct.append(direct_run(input_file, base, n, args.parallelism, piwind))
                print(f"{n:3d} chunks run {r + 1}: airflow {airflow[-1]['wall_s']:.1f} s, "
                      f"direct {direct[-1]['wall_s']:.1f} s", flush=True)
            results["parallel"].append(summarise(n, airflow, direct))
        if args.serial_runs:
            pool = f"bench_serial_{secrets.token_hex(3)}"
            platform.request("POST", "/api/v2/pools", json={"name": pool, "slots": 1, "include_deferred": False})
            model = {**base["model"], "pool": pool}
            for n in counts:
                airflow, direct = [], []
                for r in range(args.serial_runs):
                    airflow.append(airflow_run(platform, conf(n, 2000 + 10 * n + r, model=model)))
                    direct.append(direct_run(input_file, base, n, 1, piwind))
                    print(f"{n:3d} chunks serial run {r + 1}: airflow {airflow[-1]['wall_s']:.1f} s, "
                          f"direct {direct[-1]['wall_s']:.1f} s", flush=True)
                results["serial"].append(summarise(n, airflow, direct))
    finally:
        platform.stop()
    report = {
        "benchmark": "orchestration",
        "what": "v2 losses run on PiWind loc10 (10 samples, 1,447 events): wall from REST trigger to success "
                "on Airflow LocalExecutor vs the same perilflow-worker steps run directly",
        "platform": {"executor": "LocalExecutor", "metadata_db": "PostgreSQL (fresh database)",
                     "parallelism": args.parallelism, "airflow": _version("apache-airflow"),
                     "startup_s": {k: round(v, 2) for k, v in startup.items()}},
        "runs_per_count": args.runs, "serial_runs_per_count": args.serial_runs,
        "goal": "overhead <= 10 s + 0.3 s per chunk",
        "machine": info, "load_avg_at_end": os.getloadavg(), "total_s": round(time.monotonic() - t0, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    return 0


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def table(report: dict[str, Any]) -> str:
    lines = ["| mode | chunks | Airflow wall (median, range) | kernel wall (direct) | overhead | goal | met |",
             "|---|---:|---:|---:|---:|---:|:-:|"]
    for mode, rows in report["results"].items():
        label = f"{report['platform']['parallelism']} slots" if mode == "parallel" else "1-slot pool"
        for row in rows:
            lo, hi = row["airflow_wall_range_s"]
            lines.append(f"| {label} | {row['chunks']} | {row['airflow_wall_median_s']:.1f} s ({lo:.1f}-{hi:.1f}) | "
                         f"{row['kernel_wall_median_s']:.1f} s | {row['overhead_s']:.1f} s | {row['goal_s']:.1f} s | "
                         f"{'yes' if row['meets_goal'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
