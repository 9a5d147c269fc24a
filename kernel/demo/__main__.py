"""``python -m perilflow.kernel.demo <target_dir>``: write the demo model folder and print its oasislmf.json."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perilflow.kernel.demo",
        description="Write the Perilflow demo windstorm model, its lookup, settings and demo OED portfolio into a "
                    "folder (reproducible: the same files every time). Then run it with "
                    "`perilflow run --config <target_dir>/oasislmf.json --output-dir <out>`.",
    )
    parser.add_argument("target_dir", help="folder to write (created; a previous demo folder is replaced)")
    args = parser.parse_args(argv)
    from perilflow.kernel.demo import write_demo_model

    try:
        config = write_demo_model(args.target_dir)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"python -m perilflow.kernel.demo: error: {exc}\n")
        return EXIT_BAD_INPUT
    sys.stdout.write(f"{config}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
