"""Command line to convert one Oasis input file between CSV and .bin.

Examples::

    python -m perilflow.kernel.oasis.convert items.csv items.bin
    python -m perilflow.kernel.oasis.convert fm_profile.csv fm_profile_step.bin --name fm_profile_step

The layout is taken from ``--name`` or else from the source file's name
(``items.csv`` -> ``items``); the formats from the two extensions.
"""

from __future__ import annotations

import argparse

from perilflow.kernel.oasis.dtypes import FILE_DTYPES
from perilflow.kernel.oasis.errors import OasisFileError
from perilflow.kernel.oasis.files import convert


def main(argv: list[str] | None = None) -> int:
    """Run the converter; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m perilflow.kernel.oasis.convert",
        description="Convert an Oasis input file between CSV and .bin (by extension).",
    )
    parser.add_argument("src", help="source file, .csv or .bin")
    parser.add_argument("dst", help="destination file, .csv or .bin")
    parser.add_argument("--name", choices=sorted(FILE_DTYPES), help="file layout (default: source file stem)")
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.name)
    except (OasisFileError, ValueError, TypeError) as exc:
        parser.exit(1, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
