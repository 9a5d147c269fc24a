"""Where one chunk process's memory goes: RSS after each stage of ``generate_losses_chunk``.

    python -m benchmarks.chunk_memory [--size 100784] [--samples 100] [--chunk 0] [--chunks 2]

``perilflow run`` on a machine of C cores runs C chunk processes side by side, each with
1/C of the run's record budget; the peak RSS of the run is about C times a chunk's peak
plus the parent. This runs chunk ``--chunk`` of ``--chunks`` in this process the same way
(one numba thread, the same memory settings, the same budget share) and reports the
resident memory (``/proc/self/status`` VmRSS, and VmHWM for the peak):

* ``imports``: Python, numpy, numba and the kernel modules;
* ``run``: plus the model data, items and FM plans (``_Run``);
* per event block: records of each perspective, the FM work space kept between blocks,
  and RSS after the block; the block where the peak was reached;
* ``peak``: VmHWM at the end.

Memory figures do not depend on how busy the machine is, so this can run beside other work
(slowly). The run folder comes from ``benchmarks.fm_block.run_folder`` (made when missing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

MIB = 2**20


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100784, choices=(10, 12598, 100784))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--share", type=int, default=2, help="the record budget is split this many ways "
                        "(the number of chunk processes side by side; default 2, a 2-core machine)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/perilflow-fm-block"))
    parser.add_argument("--top", type=int, default=5, help="blocks listed, largest RSS first")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from benchmarks.fm_block import run_folder
    from benchmarks.inputs_vs_oasislmf import DEFAULT_SHARED

    run_dir = run_folder(args.work, DEFAULT_SHARED, args.size, args.samples)

    import dataclasses

    import numba

    from perilflow.kernel.fm import compute
    from perilflow.kernel.losses import _Run, chunk_events
    from perilflow.kernel.memory import tune_process_memory
    from perilflow.kernel.outputs import accumulate_chunk

    tune_process_memory()
    numba.set_num_threads(1)
    figures: dict = {"size": args.size, "samples": args.samples, "chunk": args.chunk, "chunks": args.chunks,
                     "imports_mib": round(_status("VmRSS"))}
    run = _Run(run_dir)
    run.settings = dataclasses.replace(run.settings, block_bytes=run.settings.block_bytes // args.share)
    figures["run_mib"] = round(_status("VmRSS"))
    events = chunk_events(run.model.events, args.chunk, args.chunks)
    stage = run_dir.parent / f"memory-chunk-{args.chunk}"
    blocks = []
    start = time.perf_counter()
    for b, ids in enumerate(run.event_blocks(events)):
        result = run.block(ids)
        records = {p: int(r[1].shape[0]) for p, r in result.items()}
        arrays = sum(a.nbytes for r in result.values() for a in r)
        for perspective, (ptr, rec_ids, losses) in result.items():
            if perspective in run.specs:
                accumulate_chunk(run.specs[perspective], run.static, ids, ptr, rec_ids, losses,
                                 stage / perspective / f"block-{b:06d}")
        del result
        with compute._WORK_LOCK:
            pooled = sum(w.nbytes for w in compute._WORK)
        blocks.append({"block": b, "events": int(ids.shape[0]), "records": records,
                       "record_arrays_mib": round(arrays / MIB), "fm_work_pooled_mib": round(pooled / MIB),
                       "rss_after_mib": round(_status("VmRSS")), "hwm_mib": round(_status("VmHWM"))})
    shutil.rmtree(stage, ignore_errors=True)   # the partial results are not needed, only the memory figures
    figures["seconds"] = round(time.perf_counter() - start, 1)
    figures["blocks"] = len(blocks)
    figures["peak_mib"] = round(_status("VmHWM"))
    first_at_peak = next(b for b in blocks if b["hwm_mib"] == blocks[-1]["hwm_mib"])
    figures["peak_reached_in"] = first_at_peak
    figures["largest_blocks"] = sorted(blocks, key=lambda b: -b["record_arrays_mib"])[:args.top]
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
