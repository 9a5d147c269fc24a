"""Run Perilflow's ground-up loss sampler on a gulmc run directory and compare with the reference.

    .venv/bin/python -m benchmarks.gul_reference.compare /tmp/perilflow_gul_reference/loc10_S10_a1 \\
        [--samples 10] [--alloc-rule 1] [--extra --random-generator=1 ...] [--runs 3] [--block 0]

The run directory is one written by ``run_reference.py`` (``static/``, ``input/`` and the
reference's decoded output ``gul.npz``). The gulmc flags that matter (``--effective-damageability``,
``--random-generator=N``, ``--ignore-correlation``, ``--ignore-haz-correlation``) are read from
``--extra`` in the same spelling. Prints JSON: records compared, values equal bit for bit (as
float32), the largest relative difference per column, and the wall time of
``sample_event_block`` over all events (median of ``--runs``, after one untimed call that
compiles or loads numba's cache). ``--block N`` splits the events into blocks of N events,
``--max-records R`` into blocks of at most R records (``split_events``); default one block.
``--no-compare`` skips the comparison (and keeps only the last block's results in memory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from perilflow.kernel.gul import N_SPECIAL, prepare_items, read_gul_inputs, sample_event_block, split_events
from perilflow.kernel.model import load_model_data, read_events


def run_ours(run_dir: Path, samples: int, alloc_rule: int, extra: list[str], block: int = 0, max_records: int = 0,
             keep: bool = True):
    """Load the run directory and sample every event; returns (events, event_ptr, item ids, losses, timer).

    With ``keep`` False the results are not kept (only timed), and the first four are None.
    """
    items, coverages, correlations = read_gul_inputs(run_dir / "input")
    static = run_dir / "static"
    events_file = next(p for p in static.iterdir() if p.name.startswith("events") and p.suffix == ".bin")
    events = read_events(events_file)
    model = load_model_data(static, vulnerability_ids=np.unique(items["vulnerability_id"]), catalogue=False)
    generator = 2
    for flag in extra:
        if flag.startswith("--random-generator"):
            generator = int(flag.split("=")[1])
    prepared = prepare_items(model, items, coverages, correlations,
                             ignore_correlation="--ignore-correlation" in extra,
                             ignore_hazard_correlation="--ignore-haz-correlation" in extra)
    options = {"alloc_rule": alloc_rule, "effective_damageability": "--effective-damageability" in extra,
                   "random_generator": generator}

    if max_records > 0:
        blocks = split_events(model, prepared, events, max_records)
    elif block > 0:
        blocks = [events[i:i + block] for i in range(0, len(events), block)]
    else:
        blocks = [events]

    def once():
        parts = []
        for b in blocks:
            result = sample_event_block(model, prepared, None, b, samples, **options)
            parts.append(result if keep else (result[0][:1].copy(), result[1][:0].copy(), result[2][:0].copy()))
        ptr = np.concatenate([[0]] + [p[0][1:] + offset for p, offset in
                                      zip(parts, np.cumsum([0] + [p[0][-1] for p in parts[:-1]]), strict=True)])
        return ptr, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])

    if not keep:
        sample_event_block(model, prepared, None, events[:2], samples, **options)  # compile / load the cache
        return None, None, None, None, once
    ptr, rows, losses = once()
    return events, ptr, prepared.item_ids[rows], losses, once


def compare(events, ptr, item_ids, losses, reference: dict) -> dict:
    """Match records by (event, item) and compare the loss columns as float32."""
    ours_key = np.repeat(events.astype(np.int64), np.diff(ptr)) * 2**32 + item_ids
    ref_key = reference["event_id"].astype(np.int64) * 2**32 + reference["item_id"]
    result = {"records": int(len(ours_key)), "reference_records": int(len(ref_key)),
              "same_records": bool(len(ours_key) == len(ref_key) and np.array_equal(np.sort(ours_key),
                                                                                  np.sort(ref_key)))}
    if not result["same_records"]:
        return result
    ours = losses[np.argsort(ours_key)].astype(np.float32)
    ref = reference["losses"][np.argsort(ref_key)]
    diff = np.abs(ours.astype(np.float64) - ref)
    rel = diff / np.maximum(np.abs(ref.astype(np.float64)), 1e-30)
    rel[diff == 0] = 0
    names = ["-5", "-4", "-3", "-2", "-1"] + [str(s) for s in range(1, ours.shape[1] - N_SPECIAL + 1)]
    per_column = dict(zip(names, rel.max(axis=0).tolist(), strict=True))
    result.update({"values": int(ours.size), "equal_values": int((ours == ref).sum()),
                   "max_rel_diff": float(rel.max()), "max_rel_diff_per_column": per_column})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--alloc-rule", type=int, default=1)
    parser.add_argument("--extra", nargs="*", default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--block", type=int, default=0)
    parser.add_argument("--max-records", type=int, default=0)
    parser.add_argument("--no-compare", action="store_true")
    args = parser.parse_args(argv)
    events, ptr, item_ids, losses, once = run_ours(args.run_dir, args.samples, args.alloc_rule, args.extra, args.block,
                                                   args.max_records, keep=not args.no_compare)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    result = {"run_dir": str(args.run_dir), "seconds_median": statistics.median(times), "seconds": times}
    reference = args.run_dir / "gul.npz"
    if reference.is_file() and not args.no_compare:
        result.update(compare(events, ptr, item_ids, losses, dict(np.load(reference))))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
