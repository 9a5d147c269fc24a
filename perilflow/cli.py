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
    from perilflow.kernel.fm.run import fm_run

    written = fm_run(
        Path(args.input_dir), Path(args.output_dir), _loss_factors(args),
        alloc_il=args.alloc_il, alloc_ri=args.alloc_ri,
        factor_column=True if args.loss_factors_file else None, with_ri=not args.skip_ri,
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _loss_factors(args: argparse.Namespace) -> list[float]:
    import pandas as pd

    factors = list(args.loss_factor or [])
    if args.loss_factors_file:
        frame = pd.read_csv(args.loss_factors_file)
        if "loss_factor" not in frame.columns:
            raise ValueError(f"{args.loss_factors_file}: no 'loss_factor' column; the file needs a header loss_factor")
        factors += frame["loss_factor"].astype(float).tolist()
    return factors or [1.0]


def _exposure_run(args: argparse.Namespace) -> int:
    from perilflow.kernel.inputs.exposure_run import exposure_run

    written = exposure_run(
        args.location, args.account, args.output_dir, ri_info=args.ri_info, ri_scope=args.ri_scope,
        peril=args.peril or "WTC", loss_factors=_loss_factors(args),
        allow_duplicate_locations=args.allow_duplicate_locations,
    )
    for name in ("guls", "ils", "rils", "loc_summary"):
        if name in written:
            print(f"{name}: {written[name]}")
    return 0


def _generate_files(args: argparse.Namespace) -> int:
    from perilflow.kernel.inputs.generate import generate_files

    written = generate_files(args.config, args.output_dir, "csv" if args.csv else "bin")
    print(f"{len(written)} files and folders written to {args.output_dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import json
    import os
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from perilflow.kernel.inputs.generate import generate_files
    from perilflow.kernel.losses import generate_losses_chunk, generate_losses_output, prepare_run_directory
    from perilflow.kernel.mdk import load_mdk_config

    config = load_mdk_config(args.config, require=("model_data_dir",))
    out = Path(args.output_dir)
    oasis_dir = Path(args.oasis_files_dir) if args.oasis_files_dir else config.oasis_files_dir
    if oasis_dir is None:
        oasis_dir = out / "input"
        generate_files(config, oasis_dir)
        print(f"input files: {oasis_dir}")
    settings_path = args.analysis_settings or config.analysis_settings_json
    if settings_path is None:
        raise ValueError(f"{args.config}: no analysis_settings_json; give --analysis-settings")
    analysis = json.loads(Path(settings_path).read_text())
    run_dir = out / "run"
    prepare_run_directory(oasis_dir, run_dir, model_data_dir=config.model_data_dir, analysis_settings=analysis,
                          model_settings=config.model_settings(), gul_alloc_rule=config.gul_alloc_rule,
                          il_alloc_rule=config.il_alloc_rule, ri_alloc_rule=config.ri_alloc_rule)
    n = args.chunks
    workers = min(n, args.workers or os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(generate_losses_chunk, [run_dir] * n, range(n), [n] * n))
    else:
        for i in range(n):
            generate_losses_chunk(run_dir, i, n)
    merged = generate_losses_output(run_dir, n)
    final = out / "output"
    shutil.rmtree(final, ignore_errors=True)
    shutil.move(str(merged), final)
    print(f"outputs: {final} ({len(list(final.iterdir()))} files)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from perilflow.kernel.oasis.files import convert

    print(convert(args.src, args.dst, args.name))
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from perilflow.plugins.db.migrate import current_revision, migrate

    url = migrate(args.url)
    shown = url.split("@", 1)[-1] if "@" in url else url  # no credentials in the output
    print(f"product DB at {shown}: revision {current_revision(url)}")
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

    exp = sub.add_parser(
        "exposure-run",
        help="OED exposure -> deterministic lookup -> Oasis files -> losses per location (reference: exposure run)",
    )
    exp.add_argument("--location", required=True, help="OED location file (csv or parquet)")
    exp.add_argument("--account", required=True, help="OED account file (csv or parquet)")
    exp.add_argument("--ri-info", help="OED reinsurance info file (with --ri-scope)")
    exp.add_argument("--ri-scope", help="OED reinsurance scope file (with --ri-info)")
    exp.add_argument("--peril", action="append", metavar="CODE",
                     help="OED peril or peril group the deterministic model covers (repeatable; default WTC)")
    exp.add_argument("--loss-factor", type=float, action="append", metavar="F",
                     help="ground-up loss as a fraction of TIV (repeat for several samples; default 1.0)")
    exp.add_argument("--loss-factors-file", metavar="CSV", help="csv with a loss_factor column")
    exp.add_argument("--allow-duplicate-locations", action="store_true",
                     help="accept a location listed twice in its account with different values (first row used)")
    exp.add_argument("--output-dir", required=True, help="folder for input/, guls/ils/rils.csv and loc_summary.csv")
    exp.set_defaults(func=_exposure_run)

    gen = sub.add_parser("generate-files", help="OED exposure + the model's lookup -> Oasis input files (MDK config)")
    gen.add_argument("--config", required=True, help="MDK configuration file (oasislmf.json)")
    gen.add_argument("--output-dir", required=True, help="folder for the Oasis input files")
    gen.add_argument("--csv", action="store_true", help="write csv files instead of Oasis .bin files")
    gen.set_defaults(func=_generate_files)

    run = sub.add_parser(
        "run", help="input generation and losses on one machine from an MDK config (as the reference's model run)")
    run.add_argument("--config", required=True, help="MDK configuration file (oasislmf.json)")
    run.add_argument("--analysis-settings", help="analysis settings JSON (default: the config's)")
    run.add_argument("--oasis-files-dir", help="use these Oasis input files instead of generating them")
    run.add_argument("--chunks", type=int, default=1, help="event chunks (outputs are identical for any number)")
    run.add_argument("--workers", type=int, help="chunks computed at once (default: the CPU count)")
    run.add_argument("--output-dir", required=True, help="folder for input/, run/ and output/")
    run.set_defaults(func=_run)

    conv = sub.add_parser("convert", help="convert an Oasis input file between csv and bin (by extension)")
    conv.add_argument("src", help="source file, .csv or .bin")
    conv.add_argument("dst", help="destination file, .csv or .bin")
    conv.add_argument("--name", help="file layout, e.g. fm_profile_step (default: the source file's stem)")
    conv.set_defaults(func=_convert)

    db = sub.add_parser("db", help="the product DB of the REST API (models, portfolios, analyses, groups)")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    db_sub.required = True
    mig = db_sub.add_parser("migrate", help="create or upgrade the product DB schema (Alembic migrations)")
    mig.add_argument("--url", help="SQLAlchemy URL (default: PERILFLOW_DATABASE_URL, else "
                                   "sqlite:///$AIRFLOW_HOME/perilflow.db)")
    mig.set_defaults(func=_db_migrate)
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
