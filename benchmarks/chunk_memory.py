"""Where one chunk process's memory goes: RSS after each stage of ``generate_losses_chunk``.

    python -m benchmarks.chunk_memory [--size 100784] [--samples 100] [--chunk 0] [--chunks 2]

``perilflow run`` on a machine of C cores runs C chunk processes side by side, each with
1/C of the run's record budget; the peak RSS of the run is about C times a chunk's peak
plus the parent. This calls ``generate_losses_chunk`` for chunk ``--chunk`` of ``--chunks`` in
this process the same way (one numba thread, the same memory settings, the same budget share),
watching each block through its ``on_block`` hook, and reports the resident memory
(``/proc/self/status`` VmRSS, and VmHWM for the peak):

* ``imports``: Python, numpy, numba and the kernel modules;
* ``run``: plus the model data, items and FM plans (``_Run``);
* per event block: records of each perspective (the block computes them one after the other and
  holds at most two at once), the FM work space kept between blocks, and RSS after the block;
  the block where the peak was reached;
* ``peak``: VmHWM at the end.

Memory figures do not depend on how busy the machine is, so this can run beside other work
(slowly). The run folder comes from ``benchmarks.fm_block.run_folder`` (made when missing).
"""

from __future__ import annotations

import argparse
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

    from benchmarks.fm_block import emit, run_folder
    from benchmarks.inputs_vs_oasislmf import DEFAULT_SHARED

    run_dir = run_folder(args.work, DEFAULT_SHARED, args.size, args.samples)

    import numba

    from perilflow.kernel.fm.compute import kept_work_space
    from perilflow.kernel.losses import _Run, generate_losses_chunk
    from perilflow.kernel.memory import tune_process_memory

    tune_process_memory()
    numba.set_num_threads(1)
    figures: dict = {"size": args.size, "samples": args.samples, "chunk": args.chunk, "chunks": args.chunks,
                     "imports_mib": round(_status("VmRSS"))}
    run = _Run(run_dir)
    figures["run_mib"] = round(_status("VmRSS"))
    blocks = []

    def on_block(b: int, ids, sizes: dict) -> None:
        blocks.append({"block": b, "events": int(ids.shape[0]),
                       "records": {p: n for p, (n, _) in sizes.items()},
                       "record_arrays_mib": round(sum(nbytes for _, nbytes in sizes.values()) / MIB),
                       "fm_work_pooled_mib": round(kept_work_space() / MIB),
                       "rss_after_mib": round(_status("VmRSS")), "hwm_mib": round(_status("VmHWM"))})

    start = time.perf_counter()
    work = generate_losses_chunk(run_dir, args.chunk, args.chunks, run.settings.block_bytes // args.share, run=run,
                                 on_block=on_block)
    shutil.rmtree(work, ignore_errors=True)   # the partial results are not needed, only the memory figures
    figures["seconds"] = round(time.perf_counter() - start, 1)
    figures["blocks"] = len(blocks)
    figures["peak_mib"] = round(_status("VmHWM"))
    figures["peak_reached_in"] = next(b for b in blocks if b["hwm_mib"] == blocks[-1]["hwm_mib"])
    figures["largest_blocks"] = sorted(blocks, key=lambda b: -b["record_arrays_mib"])[:args.top]
    emit(figures, args.out)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
