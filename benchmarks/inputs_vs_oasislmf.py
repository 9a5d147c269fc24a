"""Input generation side by side: ``perilflow generate-files`` vs oasislmf ``model generate-oasis-files``.

Both get the same MDK configuration: PiWind's model (lookup config, keys data, model
settings with correlations) and a synthetic portfolio of ``--locations`` locations on
PiWind's geography (``benchmarks/synthetic_portfolio.py``). Each tool runs in its own
process; we record wall time, CPU time (user + system, children included), peak RSS of the
process tree (sampled every 0.2 s, as ``losses_vs_oasislmf`` does) and the 1-minute load
average before and after each run (the machine may be shared), ``--runs`` times, and report
the medians, ranges and ratios.

The reference runs from its own virtual environment (default ``.bench/oasis-venv``,
created with ``pip install 'oasislmf[extra]==2.5.8' 'pandas<3'`` when missing); Perilflow never
imports it. A warm-up run of each tool on 10 locations comes first (oasislmf compiles its
numba code on first use), untimed.

    python -m benchmarks.inputs_vs_oasislmf --locations 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
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
    """Run ``cmd``: wall, CPU (user+sys of it and its descendants), peak RSS of its process tree, and the
    1-minute load average just before and just after (how busy the machine was)."""
    from benchmarks.losses_vs_oasislmf import measure  # that module imports this one

    load_before = os.getloadavg()[0]
    figures = measure(cmd, cwd, os.environ.copy())
    return {**figures, "load_before": load_before, "load_after": os.getloadavg()[0]}


def machine() -> dict[str, object]:
    """What the figures were taken on: CPUs, memory, Python, commit, date, load average at the start."""
    import psutil

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                     "")
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "commit": commit.stdout.strip(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "load_avg_at_start": os.getloadavg()}


def commands(tool: str, config: Path, out: Path, oasislmf: Path) -> list[str]:
    if tool == "perilflow":
        return [str(Path(sys.executable).with_name("perilflow")), "generate-files", "--config", str(config),
                "--output-dir", str(out)]
    return [str(oasislmf), "model", "generate-oasis-files", "--config", str(config), "--oasis-files-dir", str(out)]


#: Oasis binary files and the size of one record (no header)
BIN_RECORDS = {"items.bin": 20, "coverages.bin": 4, "fm_programme.bin": 12, "fm_policytc.bin": 16,
               "fm_profile.bin": 40, "fm_xref.bin": 12}


def count_rows(folder: Path) -> dict[str, int]:
    """Rows of the main files written in ``folder`` (-1: not written): keys (csv or parquet), the .bin
    files by record size, the summary maps by lines."""
    rows: dict[str, int] = {}
    keys = [folder / "keys.csv", folder / "keys.parquet"]
    if keys[0].exists():
        rows["keys"] = sum(1 for _ in keys[0].open()) - 1
    elif keys[1].exists():
        import pyarrow.parquet as pq

        rows["keys"] = pq.ParquetFile(keys[1]).metadata.num_rows
    else:
        rows["keys"] = -1
    for name, size in BIN_RECORDS.items():
        path = folder / name
        rows[name] = path.stat().st_size // size if path.exists() else -1
    for name in ("gul_summary_map.csv", "fm_summary_map.csv"):
        path = folder / name
        rows[name] = sum(1 for _ in path.open()) - 1 if path.exists() else -1
    return rows


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
    parser.add_argument("--note", default="", help="free text kept in the JSON (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    host = machine()
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
                    rows[tool] = count_rows(out)

    figures = ("wall_s", "cpu_s", "peak_rss_mib")
    medians = {t: {k: statistics.median(run[k] for run in results[t]) for k in figures} for t in tools}
    ranges = {t: {k: [min(run[k] for run in results[t]), max(run[k] for run in results[t])] for k in figures}
              for t in tools}
    report = {"locations": args.locations, "runs": args.runs, "medians": medians, "ranges": ranges,
              "all_runs": results, "rows_written": rows, "machine": host, "note": args.note}
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
