"""The ``perilflow`` command line.

Each sub-command is one function; heavy imports happen inside it so that
``perilflow --help`` stays instant. Errors in the user's input print one line
naming the problem and the fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perilflow import cli_algorithms

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ANALYSIS_FAILED = 3


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


#: ``perilflow run``'s default chunks per chunk process: events differ in size by orders of magnitude,
#: so equal numbers of events are unequal work (PiWind x8: 53% and 47% of the records in two halves),
#: and a process that finishes first takes the next chunk instead of waiting for the other
CHUNKS_PER_WORKER = 4

def _chunk_process(threads: int) -> None:
    """A chunk process's memory settings and numba threads (its share of the cores)."""
    import numba

    from perilflow.kernel.memory import tune_process_memory

    tune_process_memory()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


@functools.lru_cache(maxsize=1)
def _loaded_run(run_dir: Path) -> Any:
    """The run a chunk process loaded (model, items, FM plans), kept for its next chunks of that run."""
    from perilflow.kernel.losses import load_run

    return load_run(run_dir)


def _losses_chunk(run_dir: Path, chunk_index: int, n_chunks: int, block_bytes: int) -> Path:
    """One chunk in a chunk process, which loads the run once for all its chunks."""
    from perilflow.kernel.losses import generate_losses_chunk

    return generate_losses_chunk(run_dir, chunk_index, n_chunks, block_bytes, run=_loaded_run(Path(run_dir)))


def _prepare_run(config_path: str | Path, oasis_files_dir: str | Path | None, settings_path: str | Path | None,
                 output_dir: str | Path) -> str:
    """``perilflow run``'s first step: the input files (unless given) and the run folder; returns the folder."""
    from perilflow.kernel.inputs.generate import generate_files
    from perilflow.kernel.losses import prepare_run_directory
    from perilflow.kernel.mdk import load_mdk_config
    from perilflow.kernel.outputs.settings import load_analysis_settings

    config = load_mdk_config(config_path, require=("model_data_dir",))
    settings_path = settings_path or config.analysis_settings_json
    if settings_path is None:
        raise ValueError(f"{config_path}: no analysis_settings_json; give --analysis-settings")
    analysis = load_analysis_settings(settings_path)   # before the inputs: a bad file fails at once
    out = Path(output_dir)
    oasis_dir = Path(oasis_files_dir) if oasis_files_dir else config.oasis_files_dir
    if oasis_dir is None:
        oasis_dir = out / "input"
        generate_files(config, oasis_dir)
        print(f"input files: {oasis_dir}", flush=True)
    run_dir = out / "run"
    prepare_run_directory(oasis_dir, run_dir, model_data_dir=config.model_data_dir, analysis_settings=analysis,
                          model_settings=config.model_settings(), gul_alloc_rule=config.gul_alloc_rule,
                          il_alloc_rule=config.il_alloc_rule, ri_alloc_rule=config.ri_alloc_rule)
    return str(run_dir)


def _run(args: argparse.Namespace) -> int:
    import multiprocessing
    import os
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from perilflow.kernel.losses import RunSettings, generate_losses_chunk, generate_losses_output
    from perilflow.kernel.memory import tune_process_memory

    for name in ("chunks", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)}: give a whole number >= 1")
    out = Path(args.output_dir)
    prepare = (args.config, args.oasis_files_dir, args.analysis_settings, out)
    cpus = os.cpu_count() or 1
    workers = args.workers or cpus
    n = args.chunks or (CHUNKS_PER_WORKER * workers if workers > 1 else 1)
    workers = min(n, workers)
    if workers > 1:
        # spawn, not fork: a process that already ran numba's OpenMP threads must not fork (it aborts); and
        # not forkserver: its processes are not this one's children, so their CPU time would not be accounted
        context = multiprocessing.get_context("spawn")
        # the input files and the run folder are made in a process of their own, so that this one, which
        # waits for the chunks, holds 48 MiB instead of input generation's imports and leftovers (342 MiB;
        # PiWind x8, measured: the run's peak is when the chunks run)
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            run_dir = Path(pool.submit(_prepare_run, *prepare).result())
        # chunk processes, each with its share of the cores: on 2 cores, 2 single-threaded chunks beat
        # one chunk on 2 threads (the event loop's serial parts run side by side), 87.6 vs 103 s on
        # PiWind 100,784 locations; each process takes the next chunk when it is done with one (see
        # CHUNKS_PER_WORKER); the outputs are the same for any number of chunks
        threads = max(1, cpus // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_chunk_process,
                                 initargs=(threads,)) as pool:
            # the record budget is shared too, so the processes together hold what one would
            budget = RunSettings.read(run_dir).block_bytes // workers
            list(pool.map(_losses_chunk, [run_dir] * n, range(n), [n] * n, [budget] * n))
    else:
        run_dir = Path(_prepare_run(*prepare))
        tune_process_memory()  # here, not at the start: this process keeps what it frees from now on
        for i in range(n):
            generate_losses_chunk(run_dir, i, n)
    merged = generate_losses_output(run_dir, n)
    final = out / "output"
    shutil.rmtree(final, ignore_errors=True)
    shutil.move(str(merged), final)
    print(f"outputs: {final} ({len(list(final.iterdir()))} files)")
    return 0


def _warm_up(args: argparse.Namespace) -> int:
    """Compile the loss kernels into numba's on-disk cache with one small run of the demo model.

    Every ORD output is on, so every output kernel compiles too. The run is in this process
    (one chunk), in a temporary folder. Later processes, e.g. the parallel tests of
    ``make test`` or a platform's model steps, then load the compiled code instead of each
    compiling the same functions at the same time.
    """
    import json
    import tempfile
    import time

    import numba

    from perilflow.kernel.demo import write_demo_model
    from perilflow.kernel.demo.build import analysis_settings

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="perilflow-warm-up-") as tmp:
        config = write_demo_model(Path(tmp) / "model")
        settings = Path(tmp) / "analysis_settings.json"
        settings.write_text(json.dumps(analysis_settings(every_output=True)))
        _run(argparse.Namespace(config=str(config), analysis_settings=str(settings), oasis_files_dir=None,
                                chunks=1, workers=1, output_dir=str(Path(tmp) / "out")))
    where = numba.config.CACHE_DIR or "__pycache__ beside the kernel sources"
    print(f"warm-up: the demo model ran in {time.perf_counter() - start:.1f} s; numba cache: {where}")
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


# ---------------------------------------------------------------- the local platform and the REST API


def _platform(args: argparse.Namespace):  # noqa: ANN202 - LocalPlatform, imported lazily
    import os

    from perilflow.platform import DEFAULT_PORT, LocalPlatform, default_home

    port = args.port or int(os.environ.get("PERILFLOW_PORT") or DEFAULT_PORT)
    return LocalPlatform(Path(args.home) if args.home else default_home(), port=port,
                         parallelism=getattr(args, "parallelism", 0) or 0)


def _platform_start(args: argparse.Namespace) -> int:
    platform = _platform(args)
    platform.start(timeout=args.timeout, progress=print)
    print(f"UI: {platform.url}/  API: {platform.api_url}/  login: admin / {platform.secrets()['admin_password']}")
    return 0


def _platform_stop(args: argparse.Namespace) -> int:
    stopped = _platform(args).stop()
    print(f"stopped {', '.join(stopped)}" if stopped else "the platform was not running")
    return 0


def _platform_status(args: argparse.Namespace) -> int:
    import json

    status = _platform(args).status()
    print(json.dumps(status, indent=2, default=str))
    return 0 if not status["stopped"] else EXIT_FAILED


def _client(args: argparse.Namespace):  # noqa: ANN202 - PerilflowClient, imported lazily
    """The API client: --server/--token/--username/--password, else the env, else the local platform."""
    import os

    from perilflow.client import PerilflowClient
    from perilflow.platform import ADMIN_USER, LocalPlatform, default_home

    server, username, password = args.server, args.username, args.password
    if not (server or os.environ.get("PERILFLOW_SERVER")):
        local = LocalPlatform(Path(args.home) if args.home else default_home())
        state = local.state()
        if state:
            local.port = int(state["port"])
            server = local.api_url
            if not (args.token or username or os.environ.get("PERILFLOW_TOKEN")
                    or os.environ.get("PERILFLOW_USERNAME")):
                username, password = ADMIN_USER, local.secrets()["admin_password"]
    return PerilflowClient(server, token=args.token, username=username, password=password)


def _print_json(value: object) -> None:
    import json

    print(json.dumps(value, indent=2, default=str))


def _models_register(args: argparse.Namespace) -> int:
    import json

    runtime = json.loads(Path(args.runtime).read_text()) if args.runtime else {}
    for name in ("model_data_dir", "lookup_config_json", "lookup_data_dir", "model_settings_json"):
        if getattr(args, name):
            runtime[name] = getattr(args, name)
    with _client(args) as client:
        model = client.find_or_create_model(args.supplier_id, args.model_id, args.version_id, runtime=runtime)
        if args.settings:
            client.request("POST", f"v2/models/{model['id']}/settings/",
                           json=json.loads(Path(args.settings).read_text()))
        _print_json(model)
    return 0


def _portfolios_upload(args: argparse.Namespace) -> int:
    files = {kind: getattr(args, kind) for kind in ("location", "account", "ri_info", "ri_scope")
             if getattr(args, kind)}
    with _client(args) as client:
        portfolio = client.upload_portfolio(args.name, files, reporting_currency=args.reporting_currency,
                                            currency_rates=args.currency_rates)
        if args.validate:
            client.request("POST", f"v2/portfolios/{portfolio['id']}/validate/")
        _print_json(portfolio)
    return 0


def _analyses_create(args: argparse.Namespace) -> int:
    import json

    settings = json.loads(Path(args.settings).read_text()) if args.settings else None
    with _client(args) as client:
        _print_json(client.create_analysis(args.name, args.portfolio, args.model, settings))
    return 0


def _analyses_action(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(client.action(args.id, args.action))
    return 0


def _analyses_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.json:
            _print_json(client.analysis(args.id))
        else:
            print(client.progress(args.id).line())
    return 0


def _analyses_wait(args: argparse.Namespace) -> int:
    from perilflow.client import FAILED
    from perilflow.demo import progress_printer

    with _client(args) as client:
        final = client.wait(args.id, timeout=args.timeout, poll=args.poll,
                            on_progress=None if args.quiet else progress_printer(sys.stderr))
    if not args.quiet:
        sys.stderr.write("\n")
    print(final["status"])
    return EXIT_ANALYSIS_FAILED if final["status"] in FAILED else 0


def _analyses_download(args: argparse.Namespace) -> int:
    suffix = {"output_file": ".tar.gz", "input_file": ".tar.gz", "lookup_errors_file": ".csv",
              "lookup_success_file": ".csv", "lookup_validation_file": ".json", "summary_levels_file": ".json",
              "settings_file": ".json"}.get(args.file, ".txt")
    target = Path(args.output or f"analysis-{args.id}-{args.file}{suffix}")
    with _client(args) as client:
        print(client.download(f"v2/analyses/{args.id}/{args.file}/", target))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from perilflow.demo import run_demo

    platform = _platform(args)
    run_demo(platform.home, port=platform.port, timeout=args.timeout, open_browser=not args.no_browser)
    return 0


def _add_platform_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="platform folder (default: $PERILFLOW_HOME, else ./.perilflow)")
    parser.add_argument("--port", type=int, help="api-server port on 127.0.0.1 (default: $PERILFLOW_PORT, else 8080)")


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="API URL, e.g. http://host:8080/perilflow (default: $PERILFLOW_SERVER, "
                                         "else the local platform's)")
    parser.add_argument("--token", help="bearer token (default: $PERILFLOW_TOKEN)")
    parser.add_argument("--username", help="log in with this user (default: $PERILFLOW_USERNAME)")
    parser.add_argument("--password", help="and this password (default: $PERILFLOW_PASSWORD)")
    parser.add_argument("--home", help="local platform folder whose URL and admin login are used by default")


def _add_platform_parsers(sub: argparse._SubParsersAction) -> None:
    plat = sub.add_parser("platform", help="the local platform: Airflow (SQLite, LocalExecutor) + the Perilflow API")
    plat_sub = plat.add_subparsers(dest="platform_command", metavar="PLATFORM_COMMAND")
    plat_sub.required = True
    start = plat_sub.add_parser("start", help="start api-server, scheduler and dag-processor in the background")
    _add_platform_options(start)
    start.add_argument("--parallelism", type=int, default=0, help="task slots (default: the CPU count, at least 2)")
    start.add_argument("--timeout", type=float, default=300, help="seconds to wait until ready (300)")
    start.set_defaults(func=_platform_start)
    stop = plat_sub.add_parser("stop", help="stop the local platform's components")
    _add_platform_options(stop)
    stop.set_defaults(func=_platform_stop)
    stat = plat_sub.add_parser("status", help="which components run and their health (exit 1 if any is stopped)")
    _add_platform_options(stat)
    stat.set_defaults(func=_platform_status)

    demo = sub.add_parser("demo", help="start the local platform and run the bundled demo model end to end "
                                       "(what `make demo` runs)")
    _add_platform_options(demo)
    demo.add_argument("--no-browser", action="store_true", help="do not open the web page at the end")
    demo.add_argument("--timeout", type=float, default=900, help="seconds the analysis may take (900)")
    demo.set_defaults(func=_demo)

    models = sub.add_parser("models", help="models on a platform (REST API)")
    models_sub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND")
    models_sub.required = True
    reg = models_sub.add_parser("register", help="create a model (or update the runtime of an existing one)")
    _add_client_options(reg)
    reg.add_argument("--supplier-id", required=True)
    reg.add_argument("--model-id", required=True)
    reg.add_argument("--version-id", required=True)
    reg.add_argument("--runtime", metavar="JSON_FILE", help="the model's run-time object (files, chunking, image)")
    reg.add_argument("--model-data-dir", help="model data folder, relative to the platform's model root")
    reg.add_argument("--lookup-config-json", help="lookup config file, relative to the model root")
    reg.add_argument("--lookup-data-dir", help="lookup data folder, relative to the model root")
    reg.add_argument("--model-settings-json", help="model settings file, relative to the model root")
    reg.add_argument("--settings", metavar="JSON_FILE", help="upload this model settings file")
    reg.set_defaults(func=_models_register)

    portfolios = sub.add_parser("portfolios", help="portfolios on a platform (REST API)")
    portfolios_sub = portfolios.add_subparsers(dest="portfolios_command", metavar="PORTFOLIOS_COMMAND")
    portfolios_sub.required = True
    up = portfolios_sub.add_parser("upload", help="create a portfolio and upload its OED files")
    _add_client_options(up)
    up.add_argument("--name", required=True)
    up.add_argument("--location", required=True, help="OED location file (csv or parquet)")
    up.add_argument("--account", help="OED account file")
    up.add_argument("--ri-info", help="OED reinsurance info file")
    up.add_argument("--ri-scope", help="OED reinsurance scope file")
    up.add_argument("--reporting-currency", metavar="CODE",
                    help="convert every amount to this currency (ISO 4217) before input generation")
    up.add_argument("--currency-rates", metavar="FILE",
                    help="rates of exchange: a CSV cur_from,cur_to,roe or the currency conversion JSON")
    up.add_argument("--validate", action="store_true", help="validate the files (400 lists the problems)")
    up.set_defaults(func=_portfolios_upload)

    analyses = sub.add_parser("analyses", help="analyses on a platform (REST API)")
    analyses_sub = analyses.add_subparsers(dest="analyses_command", metavar="ANALYSES_COMMAND")
    analyses_sub.required = True
    create = analyses_sub.add_parser("create", help="create an analysis of a portfolio with a model")
    _add_client_options(create)
    create.add_argument("--name", required=True)
    create.add_argument("--portfolio", type=int, required=True, help="portfolio id")
    create.add_argument("--model", type=int, required=True, help="model id")
    create.add_argument("--settings", metavar="JSON_FILE", help="analysis settings file")
    create.set_defaults(func=_analyses_create)
    for action, text in (("run", "generate_and_run: inputs then losses"),
                         ("generate-inputs", "generate the Oasis input files only"),
                         ("run-losses", "run losses on generated inputs"),
                         ("cancel", "cancel the running input generation or loss run"),
                         ("resume", "re-run only the failed sub-tasks of the last run")):
        cmd = analyses_sub.add_parser(action, help=text)
        _add_client_options(cmd)
        cmd.add_argument("id", type=int, help="analysis id")
        cmd.set_defaults(func=_analyses_action, action={"run": "generate_and_run", "generate-inputs":
                                                       "generate_inputs", "run-losses": "run"}.get(action, action))
    st = analyses_sub.add_parser("status", help="status and sub-task progress of an analysis")
    _add_client_options(st)
    st.add_argument("id", type=int, help="analysis id")
    st.add_argument("--json", action="store_true", help="print the whole analysis object")
    st.set_defaults(func=_analyses_status)
    wait = analyses_sub.add_parser("wait", help="wait with a progress bar until the analysis ends "
                                                "(exit 3 if it failed or was cancelled)")
    _add_client_options(wait)
    wait.add_argument("id", type=int, help="analysis id")
    wait.add_argument("--timeout", type=float, default=3600, help="seconds (3600)")
    wait.add_argument("--poll", type=float, default=2.0, help="seconds between looks (2)")
    wait.add_argument("--quiet", action="store_true", help="no progress bar")
    wait.set_defaults(func=_analyses_wait)
    down = analyses_sub.add_parser("download", help="download an analysis file (outputs by default)")
    _add_client_options(down)
    down.add_argument("id", type=int, help="analysis id")
    down.add_argument("--file", default="output_file",
                      choices=("output_file", "input_file", "lookup_errors_file", "lookup_success_file",
                               "lookup_validation_file", "summary_levels_file", "run_log_file",
                               "run_traceback_file", "input_generation_traceback_file", "settings_file"))
    down.add_argument("--output", "-o", help="target path (default: analysis-<id>-<file>.<tar.gz,csv,json,txt>)")
    down.set_defaults(func=_analyses_download)


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
    run.add_argument("--chunks", type=int,
                     help=f"event chunks (default: {CHUNKS_PER_WORKER} per worker, 1 with one worker; outputs are "
                          "identical for any number)")
    run.add_argument("--workers", type=int, help="chunk processes at once (default: the CPU count)")
    run.add_argument("--output-dir", required=True, help="folder for input/, run/ and output/")
    run.set_defaults(func=_run)

    warm = sub.add_parser(
        "warm-up", help="compile the loss kernels into numba's on-disk cache (one small demo-model run with every "
                        "ORD output), so that later processes load them instead of compiling")
    warm.set_defaults(func=_warm_up)

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
    _add_platform_parsers(sub)
    cli_algorithms.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perilflow`` console script."""
    args = build_parser().parse_args(argv)
    from perilflow.client import ApiError
    from perilflow.platform import PlatformError

    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"perilflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ApiError, PlatformError) as exc:  # an unexpected error keeps its traceback
        message = str(exc).strip().splitlines()
        print(f"perilflow {args.command}: error: {message[0] if message else exc!r}", file=sys.stderr)
        for line in message[1:40]:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
