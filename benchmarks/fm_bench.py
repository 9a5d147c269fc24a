"""FM kernel benchmark: build_plan and run_fm on a large synthetic three-level programme.

    python -m benchmarks.fm_bench [--items N] [--samples S] [--runs R] [--out PATH]

The programme (built with vectorised numpy, no per-row Python loops):

* level 1: every item on its own (single peril, from == to), rule 12 deductible;
* level 2: locations of ``--items-per-location`` items (default 4), rule 1 deductible and limit;
* level 3: accounts of ``--locations-per-account`` locations (default 50), rule 1 (or 14 with
  ``--account-rule 14``);
* one layer, allocation rule 2 (back-allocation to every item), output per item.

Profiles are shared the way Oasis files share them: ``--profiles`` distinct term sets per level
(default 1000), each node drawing one at random. Losses: ``S`` samples plus the two special
columns the FM carries (TIV and mean), so run_fm computes ``S + 2`` columns per item.

Measured: the wall time of ``build_plan`` and of ``run_fm`` (blocks of 64 columns, computed on
``--threads`` threads, by default one per CPU), each the median
of ``--runs`` runs; run_fm is called once before that to compile it (JIT warm-up, not timed).
build_plan is pure Python and is timed from its first call (``--plan-runs`` to run it fewer
times than run_fm). Throughput is items x samples / median run_fm time. Peak RSS is the
process's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np

from perilflow.kernel.fm.compute import run_fm
from perilflow.kernel.fm.structure import FMPlan, build_plan
from perilflow.kernel.fm.terms import profile_to_terms

PROGRAMME_DTYPE = np.dtype([("from_agg_id", "<i4"), ("level_id", "<i4"), ("to_agg_id", "<i4")])
POLICYTC_DTYPE = np.dtype([("level_id", "<i4"), ("agg_id", "<i4"), ("layer_id", "<i4"), ("profile_id", "<i4")])
XREF_DTYPE = np.dtype([("output", "<i4"), ("agg_id", "<i4"), ("layer_id", "<i4")])
PROFILE_DTYPE = np.dtype(
    [("profile_id", "<i4"), ("calcrule_id", "<i4")]
    + [(name, "<f8") for name in ("deductible1", "deductible2", "deductible3", "attachment1", "limit1",
                                  "share1", "share2", "share3")]
)
N_SPECIAL = 2  # TIV and mean columns in front of the samples
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fm_bench.json"


def synthetic_tables(n_items: int, items_per_loc: int, locs_per_acc: int, n_profiles: int,
                     account_rule: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The fm_programme / fm_policytc / fm_profile / fm_xref tables as structured arrays."""
    items = np.arange(1, n_items + 1, dtype=np.int32)
    loc_of_item = (items - 1) // items_per_loc + 1
    n_locs = int(loc_of_item[-1])
    locs = np.arange(1, n_locs + 1, dtype=np.int32)
    acc_of_loc = (locs - 1) // locs_per_acc + 1
    n_accs = int(acc_of_loc[-1])
    accs = np.arange(1, n_accs + 1, dtype=np.int32)

    programme = np.empty(2 * n_items + n_locs, dtype=PROGRAMME_DTYPE)
    programme["from_agg_id"] = np.concatenate([items, items, locs])
    programme["level_id"] = np.repeat(np.array([1, 2, 3], dtype=np.int32), [n_items, n_items, n_locs])
    programme["to_agg_id"] = np.concatenate([items, loc_of_item, acc_of_loc])

    # profile ids: items 1..P, locations P+1..2P, accounts 2P+1..3P
    p = n_profiles
    profile = np.zeros(3 * p, dtype=PROFILE_DTYPE)
    profile["profile_id"] = np.arange(1, 3 * p + 1)
    profile["calcrule_id"] = np.repeat(np.array([12, 1, account_rule], dtype=np.int32), p)
    profile["share1"] = 1.0
    profile["deductible1"][:p] = rng.uniform(500, 5_000, p)            # item deductible
    profile["deductible1"][p:2 * p] = rng.uniform(1_000, 20_000, p)    # location deductible
    profile["limit1"][p:2 * p] = rng.uniform(100_000, 2_000_000, p)    # location limit
    if account_rule == 1:
        profile["deductible1"][2 * p:] = rng.uniform(10_000, 100_000, p)
    profile["limit1"][2 * p:] = rng.uniform(5e6, 5e7, p)               # account limit

    policytc = np.empty(n_items + n_locs + n_accs, dtype=POLICYTC_DTYPE)
    policytc["level_id"] = np.repeat(np.array([1, 2, 3], dtype=np.int32), [n_items, n_locs, n_accs])
    policytc["agg_id"] = np.concatenate([items, locs, accs])
    policytc["layer_id"] = 1
    policytc["profile_id"] = np.concatenate([
        rng.integers(1, p + 1, n_items), rng.integers(p + 1, 2 * p + 1, n_locs),
        rng.integers(2 * p + 1, 3 * p + 1, n_accs),
    ])

    xref = np.empty(n_items, dtype=XREF_DTYPE)
    xref["output"] = items
    xref["agg_id"] = items
    xref["layer_id"] = 1
    return {"programme": programme, "policytc": policytc, "profile": profile, "xref": xref,
            "n_locs": np.int64(n_locs), "n_accs": np.int64(n_accs)}


def synthetic_losses(n_items: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """float64[n_items, 2 + n_samples]: TIV, mean, then sampled ground-up losses (70% zeros)."""
    losses = np.empty((n_items, N_SPECIAL + n_samples))
    tiv = rng.uniform(100_000, 1_000_000, n_items)
    losses[:, 0] = tiv
    samples = losses[:, N_SPECIAL:]
    for r0 in range(0, n_items, 100_000):  # in chunks to bound the temporaries
        r1 = min(r0 + 100_000, n_items)
        damage = rng.beta(0.5, 8.0, (r1 - r0, n_samples))
        damage[rng.random((r1 - r0, n_samples)) < 0.7] = 0.0
        samples[r0:r1] = damage * tiv[r0:r1, None]
    losses[:, 1] = samples.mean(axis=1)
    return losses


def make_plan(tables: dict[str, np.ndarray]) -> FMPlan:
    profile = tables["profile"]
    rules, terms = profile_to_terms(profile)
    return build_plan(tables["programme"], tables["policytc"], rules, terms, profile["profile_id"], False,
                      tables["xref"], 2)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def machine_info() -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        root = Path(__file__).resolve().parents[1]
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                            text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fm_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000, help="number of items (default 1,000,000)")
    ap.add_argument("--samples", type=int, default=100, help="samples per item, plus 2 special columns (default 100)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of run_fm after the warm-up (default 3)")
    ap.add_argument("--plan-runs", type=int, default=None, help="timed runs of build_plan (default: --runs)")
    ap.add_argument("--block", type=int, default=64, help="columns computed together by run_fm (default 64)")
    ap.add_argument("--threads", type=int, default=None,
                    help="column blocks run_fm computes at once (default: run_fm's default, the CPU count)")
    ap.add_argument("--items-per-location", type=int, default=4)
    ap.add_argument("--locations-per-account", type=int, default=50)
    ap.add_argument("--account-rule", type=int, choices=(1, 14), default=1)
    ap.add_argument("--profiles", type=int, default=1000, help="distinct profiles per level (default 1000)")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result file (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    if min(args.items, args.samples, args.runs, args.block, args.plan_runs or 1, args.threads or 1) < 1:
        ap.error("--items, --samples, --runs, --plan-runs, --block and --threads must be at least 1")
    if args.plan_runs is None:
        args.plan_runs = args.runs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)

    t_tables, tables = timed(synthetic_tables, args.items, args.items_per_location, args.locations_per_account,
                             args.profiles, args.account_rule, rng)
    t_losses, losses = timed(synthetic_losses, args.items, args.samples, rng)
    n_locs, n_accs = int(tables["n_locs"]), int(tables["n_accs"])
    print(f"programme: {args.items:,} items, {n_locs:,} locations, {n_accs:,} accounts "
          f"({t_tables:.1f} s); losses {losses.shape[0]:,} x {losses.shape[1]} ({t_losses:.1f} s, "
          f"{losses.nbytes / 2**20:,.0f} MiB)", flush=True)

    plan_times = []
    plan = None
    for k in range(args.plan_runs):
        plan = None  # release the previous plan before building the next
        t, plan = timed(make_plan, tables)
        plan_times.append(t)
        print(f"build_plan run {k + 1}/{args.plan_runs}: {t:.2f} s", flush=True)
    rss_after_plan = peak_rss_mib()

    n_blocks = -(-losses.shape[1] // args.block)
    workers = min(n_blocks, args.threads or os.cpu_count() or 1)  # as run_fm decides
    t_warm, result = timed(run_fm, plan, losses, block=args.block, threads=args.threads)
    print(f"run_fm warm-up (JIT compile or cache load + run): {t_warm:.2f} s", flush=True)
    fm_times = []
    for k in range(args.runs):
        result = None
        t, result = timed(run_fm, plan, losses, block=args.block, threads=args.threads)
        fm_times.append(t)
        print(f"run_fm run {k + 1}/{args.runs}: {t:.2f} s", flush=True)
    rss_peak = peak_rss_mib()

    # cheap sanity checks: one output per item, insured loss within ground up
    assert result.shape == (args.items, losses.shape[1])
    assert np.isfinite(result).all() and (result >= 0).all()
    assert (result[:, N_SPECIAL:].sum(axis=0) <= losses[:, N_SPECIAL:].sum(axis=0) * (1 + 1e-9)).all()

    plan_median = statistics.median(plan_times)
    fm_median = statistics.median(fm_times)
    throughput = args.items * args.samples / fm_median
    record = {
        "benchmark": "fm_bench",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "items": args.items, "samples": args.samples, "columns": losses.shape[1], "runs": args.runs,
            "plan_runs": args.plan_runs, "block": args.block, "column_blocks": n_blocks,
            "threads": args.threads, "run_fm_workers": workers, "items_per_location": args.items_per_location,
            "locations_per_account": args.locations_per_account, "locations": n_locs, "accounts": n_accs,
            "account_rule": args.account_rule, "profiles_per_level": args.profiles, "allocation_rule": 2,
            "seed": args.seed,
        },
        "build_plan_s": {"median": plan_median, "runs": plan_times},
        "run_fm_s": {"median": fm_median, "runs": fm_times, "warmup": t_warm},
        "throughput_item_samples_per_s": throughput,
        "peak_rss_mib": {"after_build_plan": rss_after_plan, "overall": rss_peak},
        "input_mib": losses.nbytes / 2**20,
        "machine": machine_info(),
    }

    rows = [
        ("items x samples (+2 special columns)", f"{args.items:,} x {args.samples}"),
        (f"build_plan median of {args.plan_runs}", f"{plan_median:.2f} s"),
        (f"run_fm median of {args.runs} (block {args.block}, threads {workers})", f"{fm_median:.2f} s"),
        ("run_fm warm-up (not timed)", f"{t_warm:.2f} s"),
        ("throughput", f"{throughput / 1e6:,.1f} M item-samples/s"),
        ("peak RSS after build_plan", f"{rss_after_plan:,.0f} MiB"),
        ("peak RSS overall", f"{rss_peak:,.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
