"""One event block through the financial module: CPU time of the insured FM and the reinsurance passes.

    python -m benchmarks.fm_block [--size 100784] [--samples 10] [--block 0] [--runs 5] [--threads 1]

The losses stage computes event blocks of ~512 MiB of loss records (``_Run.event_blocks``);
this takes block ``--block`` of PiWind at ``--size`` locations (12,598 or 100,784, from
../shared/piwind, with its reinsurance and ``ord_all_outputs_s10.json`` at ``--samples``),
samples its ground-up losses once (not timed), runs ``_Run.fm_passes`` once to compile,
then ``--runs`` times, timing the process CPU time (``time.process_time``) of the insured
FM (IL), the reinsurance passes (RI) and the two together (whole). Reported: the minimum of each
over the runs (CPU time on one thread is the steadiest figure on a shared machine), the
median, and a SHA-256 of every output array so that two versions of the kernel can be
checked for byte-identical results.

Memory: on a freshly booted VM the first touch of memory the guest never used costs ~2 s/GiB
(the hypervisor backs it then), far more than the FM itself; ``--warm-gib`` (default 2) GiB are
touched and freed before the runs so that the FM's output arrays land on memory already backed,
as on a machine that has been running for a while.

Oasis input files and the run folder are generated once under ``--work`` (default
``/tmp/perilflow-fm-block``) and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from itertools import islice
from pathlib import Path

import numpy as np

from benchmarks.inputs_vs_oasislmf import DEFAULT_SHARED, machine
from benchmarks.losses_vs_oasislmf import write_config
from perilflow.kernel.fm.compute import run_fm_events
from perilflow.kernel.losses import FM_COLUMNS_OF_GUL, SPECIALS, _fm_column_map, _Run, prepare_run_directory


def run_folder(work: Path, shared: Path, size: int, samples: int) -> Path:
    """The run folder of PiWind at ``size`` locations and ``samples`` samples (made when missing)."""
    from perilflow.kernel.inputs.generate import generate_files
    from perilflow.kernel.mdk import load_mdk_config

    folder = work / f"loc{size}_s{samples}"
    run = folder / "run"
    if (run / "run_settings.json").exists():
        return run
    folder.mkdir(parents=True, exist_ok=True)
    config = load_mdk_config(write_config(folder, shared, size, samples), require=("model_data_dir",))
    inputs = folder / "input"
    if not (inputs / "fm_programme.bin").exists():
        generate_files(config, inputs)
    analysis = json.loads((folder / "analysis_settings.json").read_text())
    prepare_run_directory(inputs, run, model_data_dir=config.model_data_dir, analysis_settings=analysis,
                          model_settings=config.model_settings(), gul_alloc_rule=config.gul_alloc_rule,
                          il_alloc_rule=config.il_alloc_rule, ri_alloc_rule=config.ri_alloc_rule)
    return run


def digest(result: dict[str, tuple[np.ndarray, ...]]) -> str:
    """SHA-256 over every array of the FM passes' results (same digest = byte-identical outputs)."""
    h = hashlib.sha256()
    for name in sorted(result):
        for array in result[name]:
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100784, choices=(10, 12598, 100784))
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--block", type=int, default=0, help="index of the event block (0 = first)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--work", type=Path, default=Path("/tmp/perilflow-fm-block"))
    parser.add_argument("--warm-gib", type=float, default=2.0, help="GiB touched and freed before the runs")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    run = _Run(run_folder(args.work, args.shared, args.size, args.samples))
    if run.il_plan is None:
        parser.error("the analysis has no insured losses (il_output/ri_output off): nothing for the FM to do")
    event_ids = next(islice(run.event_blocks(run.model.events), args.block, None))
    gul = run.block(event_ids)["gul"]   # ground-up sampling (and a first FM run: compilation)
    event_ptr = gul[0]
    item_row = gul[1] - 1
    losses = gul[2]

    np.ones(int(args.warm_gib * 2**30) // 8)   # touched, then freed at once
    ri_plans = run.ri_plans
    cols = _fm_column_map(losses.shape[1] - SPECIALS + len(FM_COLUMNS_OF_GUL))
    times: dict[str, list[float]] = {"il": [], "ri": [], "whole": []}
    for _ in range(args.runs):
        run.ri_plans = []
        t0 = time.process_time()
        il = run.fm_passes(event_ptr, item_row, losses, threads=args.threads)["il"]
        t1 = time.process_time()
        ptr, ids, ri = il
        for plan in ri_plans:   # as _Run.fm_passes does
            ptr, index, ri = run_fm_events(plan, ptr, ids - 1, ri, net=True, columns=cols, out_columns=cols,
                                           out_width=losses.shape[1], threads=args.threads)
            ids = plan.output_id[index].astype(np.int64)
        t2 = time.process_time()
        times["il"].append(t1 - t0)
        times["ri"].append(t2 - t1)
        times["whole"].append(t2 - t0)
    run.ri_plans = ri_plans
    result = run.fm_passes(event_ptr, item_row, losses, threads=args.threads)
    report = {
        "size": args.size, "samples": args.samples, "block": args.block, "threads": args.threads,
        "events": int(event_ids.shape[0]), "gul_records": int(losses.shape[0]),
        "il_records": int(result["il"][1].shape[0]),
        "ri_records": int(result["ri"][1].shape[0]) if "ri" in result else 0,
        "min_s": {k: round(min(v), 4) for k, v in times.items()},
        "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "runs_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "digest": digest(result),
        "load_avg_at_end": os.getloadavg(),
        "machine": machine(),
    }
    emit(report, args.out)
    return 0


def emit(report: dict, out: Path | None) -> None:
    """Print ``report`` as JSON, and write it to ``out`` too when given."""
    print(json.dumps(report, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
