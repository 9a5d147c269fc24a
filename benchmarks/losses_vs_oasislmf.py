"""Whole analyses side by side: ``perilflow run`` vs oasislmf ``model run`` on PiWind.

For each exposure size (12,598 and 100,784 locations by default) and sample count (10
and 100), both engines run the same MDK configuration -- PiWind's model, the exposure, the
reinsurance files and every ORD output (``ord_all_outputs_s10.json`` with
``number_of_samples`` replaced) -- from OED to output files, each in its own process. We
record wall time, CPU time (user + system of every waited-for descendant, from rusage) and
peak RSS of the process tree (sampled every 0.2 s with psutil), ``--runs`` times, and report
medians and ratios. Runs interleave: run 1 of each engine, then run 2, and so on. After a
cell's runs, the two engines' outputs are compared table by table (``benchmarks.agreement``:
deterministic quantities, sampled AAL, sampled EPT) and the differences go into the results.

The reference runs from its own virtual environment (``.bench/oasis-venv``, created with
``pip install 'oasislmf[extra]==2.5.8' 'pandas<3'`` when missing); Perilflow never imports
it. One untimed warm-up run of each engine on 10 locations comes first (numba compilation).

    python -m benchmarks.losses_vs_oasislmf --sizes 12598,100784 --samples 10,100 --runs 3
    python -m benchmarks.losses_vs_oasislmf --reference-only --sizes 10 --samples 10   # test assets
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.agreement import compare_ord_outputs, summary_line
from benchmarks.inputs_vs_oasislmf import DEFAULT_SHARED, ROOT, ensure_reference_venv, machine

LOCATION_FILES = {10: "tests/inputs/SourceLocOEDPiWind10.csv", 12598: "tests/inputs/SourceLocOEDPiWind.csv",
                  100784: "scaled_exposure/SourceLocOEDPiWind_x8.csv"}


def write_config(folder: Path, shared: Path, size: int, samples: int) -> Path:
    piwind = shared / "piwind"
    settings = json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json").read_text())
    settings["number_of_samples"] = samples
    (folder / "analysis_settings.json").write_text(json.dumps(settings, indent=2))
    config = json.loads((piwind / "oasislmf_loc10.json").read_text())
    config = {k: (str((piwind / v).resolve()) if isinstance(v, str) and not k.startswith("ktools") else v)
              for k, v in config.items()}
    config["oed_location_csv"] = str(piwind / LOCATION_FILES[size])
    config["analysis_settings_json"] = str(folder / "analysis_settings.json")
    path = folder / "oasislmf.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Wall, CPU and peak RSS of ``cmd`` and all its descendants."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        rss = 0
        try:
            tree = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, rss)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every descendant that was waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-4000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak / 2**20}


def command(tool: str, config: Path, out: Path, oasislmf: Path) -> list[str]:
    if tool == "perilflow":
        return [str(Path(sys.executable).with_name("perilflow")), "run", "--config", str(config),
                "--output-dir", str(out)]
    return [str(oasislmf), "model", "run", "-C", str(config), "-r", str(out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="12598,100784")
    parser.add_argument("--samples", default="10,100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="perilflow,oasislmf")
    parser.add_argument("--reference-only", action="store_true", help="only the reference (e.g. to refresh assets)")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the untimed 10-location runs (when both engines' numba caches are warm already)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "losses")
    parser.add_argument("--oasis-venv", type=Path, default=Path(os.environ.get("PERILFLOW_OASIS_VENV",
                                                                               ROOT / ".bench" / "oasis-venv")))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "losses_vs_oasislmf.json")
    args = parser.parse_args(argv)
    tools = ["oasislmf"] if args.reference_only else args.tools.split(",")
    oasislmf = ensure_reference_venv(args.oasis_venv) if "oasislmf" in tools else Path("oasislmf")
    env = dict(os.environ, PATH=f"{oasislmf.parent}:{os.environ.get('PATH', '')}")

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    warm_up = [] if args.no_warm_up else [(10, 10, 1, False)]
    plan = warm_up + [(int(n), int(s), args.runs, True) for n in args.sizes.split(",")
                      for s in args.samples.split(",")]
    for size, samples, runs, timed in plan:
        key = f"loc{size}_s{samples}"
        folder = args.work / key
        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder, args.shared, size, samples)
        # Runs interleave (run 1 of each engine, then run 2, ...): the shared VMs drift by 10-20% over an
        # hour, and interleaving spreads that drift over both engines instead of charging it to one.
        figures: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
        for r in range(runs):
            for tool in tools:
                out = folder / f"out_{tool}"
                shutil.rmtree(out, ignore_errors=True)
                load_before = os.getloadavg()[0]
                result = measure(command(tool, config, out, oasislmf), folder, env)
                # how busy the (shared) machine was: 1-minute load average just before and just after
                result.update(load_before=load_before, load_after=os.getloadavg()[0])
                figures[tool].append(result)
                if timed:
                    print(f"{tool} loc{size} S{samples} run {r + 1}: {result}", flush=True)
                    runs_ = figures[tool]
                    report.setdefault(key, {})[tool] = {
                        "runs": runs_,
                        "median": {k: statistics.median(f[k] for f in runs_) for k in runs_[0]},
                        "machine": machine(),
                    }
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(report, indent=2))  # after every run: a stopped run keeps the rest
        if timed and {"perilflow", "oasislmf"} <= set(tools):
            # the same answers? the last run of each engine, table by table (benchmarks.agreement)
            agreement = compare_ord_outputs(folder / "out_perilflow" / "output", folder / "out_oasislmf" / "output")
            report[key]["agreement"] = agreement
            print(f"loc{size} S{samples} agreement: {summary_line(agreement)}", flush=True)
            args.out.write_text(json.dumps(report, indent=2))
    for key, tools_ in report.items():
        if {"perilflow", "oasislmf"} <= set(tools_):
            a, b = tools_["oasislmf"]["median"], tools_["perilflow"]["median"]
            print(f"{key}: wall {a['wall_s']:.1f}/{b['wall_s']:.1f} s = {a['wall_s'] / b['wall_s']:.1f}x, "
                  f"cpu {a['cpu_s'] / b['cpu_s']:.1f}x, peak RSS {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
