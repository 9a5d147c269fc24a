"""Input generation side by side: ``perilflow generate-files`` vs oasislmf ``model generate-oasis-files``.

Both get the same MDK configuration: PiWind's model (lookup config, keys data, model
settings with correlations) and a synthetic portfolio of ``--locations`` locations on
PiWind's geography (``benchmarks/synthetic_portfolio.py``). Each tool runs in its own
process; we record wall time, CPU time (user + system, children included) and peak RSS,
``--runs`` times, and report the medians and the ratios.

The reference runs from its own virtual environment (default ``.bench/oasis-venv``,
created with ``pip install 'oasislmf[extra]==2.5.8' 'pandas<3'`` when missing); Perilflow never
imports it. A warm-up run of each tool on 10 locations comes first (oasislmf compiles its
numba code on first use), untimed.

    python -m benchmarks.inputs_vs_oasislmf --locations 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.synthetic_portfolio import make_portfolio

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared"


def ensure_reference_venv(venv: Path) -> Path:
    """The oasislmf executable of ``venv``, installing the reference there if needed."""
    exe = venv / "bin" / "oasislmf"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "oasislmf[extra]==2.5.8", "pandas<3"], check=True)
    return exe


def write_config(folder: Path, shared: Path, location: Path, account: Path) -> Path:
    piwind = shared / "piwind"
    config = {
        "model_data_dir": str(piwind / "model_data/PiWind"),
        "lookup_config_json": str(piwind / "keys_data/PiWind/lookup_config.json"),
        "lookup_data_dir": str(piwind / "keys_data/PiWind"),
        "model_settings_json": str(piwind / "meta-data/model_settings.json"),
        "oed_location_csv": str(location),
        "oed_accounts_csv": str(account),
    }
    path = folder / "oasislmf.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def timed(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Run ``cmd``; wall, CPU (user+sys of the children) and peak RSS of the largest child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_mib": after.ru_maxrss / 1024}


def commands(tool: str, config: Path, out: Path, oasislmf: Path) -> list[str]:
    if tool == "perilflow":
        return [str(Path(sys.executable).with_name("perilflow")), "generate-files", "--config", str(config),
                "--output-dir", str(out)]
    return [str(oasislmf), "model", "generate-oasis-files", "--config", str(config), "--oasis-files-dir", str(out)]


def count_rows(folder: Path, name: str) -> int:
    path = folder / name
    return int(sum(1 for _ in path.open()) - 1) if path.exists() else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "inputs")
    parser.add_argument("--oasis-venv", type=Path, default=Path(os.environ.get("PERILFLOW_OASIS_VENV",
                                                                               ROOT / ".bench" / "oasis-venv")))
    parser.add_argument("--tools", default="perilflow,oasislmf")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inputs_vs_oasislmf.json")
    args = parser.parse_args(argv)
    tools = args.tools.split(",")
    oasislmf = ensure_reference_venv(args.oasis_venv) if "oasislmf" in tools else Path("oasislmf")

    results: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    rows: dict[str, dict[str, int]] = {}
    for n, runs in ((10, 1), (args.locations, args.runs)):
        folder = args.work / f"loc{n}"
        folder.mkdir(parents=True, exist_ok=True)
        loc, acc = make_portfolio(args.shared, n)
        loc.to_csv(folder / "location.csv", index=False)
        acc.to_csv(folder / "account.csv", index=False)
        config = write_config(folder, args.shared, folder / "location.csv", folder / "account.csv")
        for tool in tools:
            for r in range(runs):
                out = folder / f"out_{tool}"
                shutil.rmtree(out, ignore_errors=True)
                figures = timed(commands(tool, config, out, oasislmf), folder)
                if n == args.locations:
                    results[tool].append(figures)
                    print(f"{tool} {n} locations run {r + 1}: {figures}", flush=True)
                    rows[tool] = {name: count_rows(out, name) for name in
                                  ("keys.csv", "items.csv", "coverages.csv", "fm_programme.csv", "fm_xref.csv")}

    medians = {t: {k: statistics.median(run[k] for run in results[t]) for k in ("wall_s", "cpu_s", "peak_rss_mib")}
               for t in tools}
    report = {"locations": args.locations, "runs": args.runs, "medians": medians, "all_runs": results,
              "rows_written": rows, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    if len(tools) == 2:
        a, b = medians["oasislmf"], medians["perilflow"]
        report["ratios"] = {"wall": a["wall_s"] / b["wall_s"], "cpu": a["cpu_s"] / b["cpu_s"],
                            "peak_rss": b["peak_rss_mib"] / a["peak_rss_mib"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    table = pd.DataFrame(medians).T
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    print(json.dumps(report.get("ratios", {}), indent=2))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
