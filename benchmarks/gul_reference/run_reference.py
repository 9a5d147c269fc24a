"""Produce reference ground-up losses with the Oasis reference engine (oasislmf's ``gulmc``).

Run it with the interpreter of a separate virtualenv that has the reference installed
(the product never imports it)::

    python3 -m venv /tmp/oasis-venv && /tmp/oasis-venv/bin/pip install oasislmf==2.5.8 'pandas<3'
    /tmp/oasis-venv/bin/python benchmarks/gul_reference/run_reference.py --portfolio loc10 --samples 10

For one portfolio of ``/work/shared/piwind/expected-inputs`` (``loc10``, ``loc12598``) or the
synthetic model of ``synthetic.py`` (``synthetic``) it assembles a gulmc run directory
(``static/`` = PiWind's model_data ``.bin`` files, symlinked under the names gulmc expects, or
the synthetic model; ``input/`` = items / coverages / correlations csv files, which gulmc reads
directly), streams every event of the event set through ``gulmc -S<n> -a<rule> -L0 [extra]``
(default random generator unless ``--extra`` says otherwise), times it, and decodes the binary
gul stream into ``gul.npz``:

* ``event_id``, ``item_id`` (int32, one entry per (event, item) record, in stream order);
* ``losses`` (float32 ``[n_records, 5 + n_samples]``): columns sidx -5, -4, -3, -2, -1, 1..N;
  a sample gulmc did not write (below the ``-L`` threshold) is 0.

It prints a JSON summary (time, record count). ``--asset PATH`` also writes the small extract the
tests compare against (see :func:`write_asset`). Nothing here imports perilflow, so the script
runs under the reference venv's interpreter.

The committed extracts in ``tests/assets/piwind_gul/`` were made with::

    P=/tmp/oasis-venv/bin/python; S=benchmarks/gul_reference/run_reference.py; A=tests/assets/piwind_gul
    $P $S --portfolio loc10 --samples 10 --alloc-rule 1 --asset $A/piwind_loc10_S10_a1.npz
    $P $S --portfolio synthetic --samples 20 --alloc-rule 1 --asset $A/synthetic_S20_a1.npz
    $P $S --portfolio synthetic --samples 20 --alloc-rule 0 --extra=--effective-damageability \
        --asset $A/synthetic_S20_a0_effective.npz
    $P $S --portfolio synthetic --samples 20 --alloc-rule 2 --extra=--random-generator=1 \
        --asset $A/synthetic_S20_a2_rng1.npz
    $P $S --portfolio synthetic --samples 20 --alloc-rule 3 --extra=--random-generator=0 \
        --asset $A/synthetic_S20_a3_rng0.npz
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("PERILFLOW_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
PIWIND = SHARED / "piwind"
STATIC_FILES = ("footprint.bin", "footprint.idx", "vulnerability.bin", "damage_bin_dict.bin", "events_p.bin")
INPUT_FILES = ("items.csv", "coverages.csv", "correlations.csv")
N_SPECIAL = 5


def build_run_dir(run_dir: Path, portfolio: str) -> Path:
    """Create ``run_dir`` with ``static/`` and ``input/`` for gulmc; return the events file."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    if portfolio == "synthetic":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from synthetic import write_synthetic

        write_synthetic(run_dir / "static", run_dir / "input")
        return run_dir / "static" / "events.bin"
    model_data = PIWIND / "model_data" / "PiWind"
    inputs = PIWIND / "expected-inputs" / portfolio
    (run_dir / "static").mkdir(parents=True)
    (run_dir / "input").mkdir()
    for name in STATIC_FILES:
        (run_dir / "static" / name).symlink_to(model_data / name)
    for name in INPUT_FILES:
        shutil.copy(inputs / name, run_dir / "input" / name)
    return run_dir / "static" / "events_p.bin"


def decode_gul_stream(data: bytes, n_samples: int) -> dict[str, np.ndarray]:
    """Decode a gulmc item stream into per-record arrays (see the module docstring)."""
    words = np.frombuffer(data, dtype="<i4")
    stream_type, max_sidx = int(words[0]), int(words[1])
    if stream_type != 0x02000001 or max_sidx != n_samples:
        raise ValueError(f"unexpected stream header {stream_type:#x}, {max_sidx}")
    floats = words.view("<f4")
    event_ids, item_ids, rows = [], [], []
    pos = 2
    n_words = len(words)
    while pos < n_words:
        event_ids.append(words[pos])
        item_ids.append(words[pos + 1])
        pos += 2
        row = np.zeros(N_SPECIAL + n_samples, dtype=np.float32)
        while True:
            sidx = int(words[pos])
            loss = floats[pos + 1]
            pos += 2
            if sidx == 0:
                break
            column = sidx + N_SPECIAL if sidx < 0 else N_SPECIAL + sidx - 1
            row[column] = loss
        rows.append(row)
    return {
        "event_id": np.asarray(event_ids, dtype=np.int32),
        "item_id": np.asarray(item_ids, dtype=np.int32),
        "losses": np.asarray(rows, dtype=np.float32).reshape(-1, N_SPECIAL + n_samples),
    }


def write_asset(decoded: dict[str, np.ndarray], path: Path, every: int) -> None:
    """Save a small extract for the tests: every record's ids and mean (sidx -1), and all columns
    of the records of events whose id is a multiple of ``every`` (``every`` 1 keeps everything)."""
    keep = decoded["event_id"] % every == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, event_id=decoded["event_id"], item_id=decoded["item_id"],
                        mean=decoded["losses"][:, N_SPECIAL - 1], full_rows=np.flatnonzero(keep).astype(np.int32),
                        losses=decoded["losses"][keep], every=np.int32(every))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portfolio", default="loc10", help="loc10, loc12598 (PiWind expected-inputs) or synthetic")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--alloc-rule", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="timed runs (the first one also compiles if needed)")
    parser.add_argument("--gulmc", default=str(Path(sys.executable).with_name("gulmc")))
    parser.add_argument("--extra", nargs="*", default=[], help="extra gulmc arguments, e.g. --effective-damageability")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/perilflow_gul_reference"))
    parser.add_argument("--name", help="run folder name under --work-dir (default from the arguments)")
    parser.add_argument("--timing-only", action="store_true",
                        help="send the stream to /dev/null (no gul.npz): times the computation, not the disk")
    parser.add_argument("--asset", type=Path, help="also write a small extract for the tests here (.npz)")
    parser.add_argument("--asset-every", type=int, default=1,
                        help="the extract keeps all columns for events whose id is a multiple of this")
    args = parser.parse_args(argv)

    name = args.name or f"{args.portfolio}_S{args.samples}_a{args.alloc_rule}" + "".join(
        "_" + flag.strip("-").replace("=", "") for flag in args.extra)
    run_dir = args.work_dir / name
    events = build_run_dir(run_dir, args.portfolio)
    out = Path("/dev/null") if args.timing_only else run_dir / "gul.bin"
    command = [args.gulmc, "--run-dir", str(run_dir), "-i", str(events), "-o", str(out),
               f"-S{args.samples}", f"-a{args.alloc_rule}", "-L0", *args.extra]
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=run_dir)
        times.append(time.perf_counter() - start)
    summary = {"run_dir": str(run_dir), "command": command, "seconds": times}
    if not args.timing_only:
        decoded = decode_gul_stream(out.read_bytes(), args.samples)
        np.savez(run_dir / "gul.npz", **decoded)
        if args.asset:
            write_asset(decoded, args.asset, args.asset_every)
        summary.update(records=int(len(decoded["event_id"])), events=int(len(np.unique(decoded["event_id"]))))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
