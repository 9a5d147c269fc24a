"""The ``perilflow`` command line.

Each sub-command is one function; heavy imports happen inside it so that
``perilflow --help`` stays instant. Errors in the user's input print one line
naming the problem and the fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


def _fm_run(args: argparse.Namespace) -> int:
    import pandas as pd

    from perilflow.kernel.fm.run import fm_run

    factors = list(args.loss_factor or [])
    if args.loss_factors_file:
        frame = pd.read_csv(args.loss_factors_file)
        if "loss_factor" not in frame.columns:
            raise ValueError(f"{args.loss_factors_file}: no 'loss_factor' column; the file needs a header loss_factor")
        factors += frame["loss_factor"].astype(float).tolist()
    if not factors:
        factors = [1.0]
    written = fm_run(
        Path(args.input_dir), Path(args.output_dir), factors,
        alloc_il=args.alloc_il, alloc_ri=args.alloc_ri,
        factor_column=True if args.loss_factors_file else None, with_ri=not args.skip_ri,
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from perilflow.kernel.oasis.files import convert

    print(convert(args.src, args.dst, args.name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perilflow",
        description="Perilflow: Oasis-compatible catastrophe loss modelling on Apache Airflow.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fm = sub.add_parser(
        "fm-run",
        help="run the financial module (IL and reinsurance) on Oasis input files for one deterministic event",
        description=(
            "Ground-up loss of each item = loss factor x coverage TIV / items of the coverage (one sample per "
            "factor), then insured losses and the reinsurance passes of ri_layers.json. Writes guls.csv, "
            "ils.csv and, with RI files, rils.csv."
        ),
    )
    fm.add_argument("--input-dir", required=True, help="folder with items, coverages and fm_* files (csv or bin)")
    fm.add_argument("--output-dir", required=True, help="folder to write guls.csv, ils.csv, rils.csv into")
    fm.add_argument("--loss-factor", type=float, action="append", metavar="F",
                    help="loss factor (repeat for several samples; default 1.0)")
    fm.add_argument("--loss-factors-file", metavar="CSV",
                    help="csv with a loss_factor column (adds loss_factor_idx to the outputs)")
    fm.add_argument("--alloc-il", type=int, default=2, choices=(0, 1, 2, 3), help="IL allocation rule (default 2)")
    fm.add_argument("--alloc-ri", type=int, default=3, choices=(0, 1, 2, 3), help="RI allocation rule (default 3)")
    fm.add_argument("--skip-ri", action="store_true", help="ignore ri_layers.json (insured losses only)")
    fm.set_defaults(func=_fm_run)

    conv = sub.add_parser("convert", help="convert an Oasis input file between csv and bin (by extension)")
    conv.add_argument("src", help="source file, .csv or .bin")
    conv.add_argument("dst", help="destination file, .csv or .bin")
    conv.add_argument("--name", help="file layout, e.g. fm_profile_step (default: the source file's stem)")
    conv.set_defaults(func=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perilflow`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"perilflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
