"""``perilflow-worker``: the model-worker contract, one step per sub-command.

    perilflow-worker <step> --params <json or path to a json file>
    perilflow-worker versions

Steps read their inputs from and write their outputs to the paths in the params; exit
status 0 means success, 2 a problem with the inputs (one line on stderr naming it), 1
anything else. This is what a local process or a Kubernetes pod runs for a model step, so
it needs no Airflow and no database.

==================  =============================================================
step                params
==================  =============================================================
generate-files      config (MDK oasislmf.json), output_dir [, file_format]
prepare             oasis_files_dir, run_dir, model_data_dir, analysis_settings
                    (path or object) [, model_settings (path or object),
                    gul_alloc_rule, il_alloc_rule, ri_alloc_rule]
chunk               run_dir, chunk_index, n_chunks
merge               run_dir, n_chunks
==================  =============================================================

The platform's analysis steps (storage URIs in and out, one per sub-task of a run) are in
:mod:`perilflow.kernel.pipeline`: pre-analysis-hook, prepare-keys-file, collect-keys,
write-input-files, prepare-losses-generation-directory, generate-losses-chunk,
generate-losses-output and generate-losses (run_mode v1).

Exit status: 0 success, 2 bad input, 3 no keys (the lookup matched no location), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from perilflow.kernel.pipeline import STEPS as PIPELINE_STEPS
from perilflow.kernel.pipeline import NoKeysError, need

EXIT_BAD_INPUT = 2
EXIT_NO_KEYS = 3


def load_params(text: str) -> dict[str, Any]:
    """Params from a JSON string or the path of a JSON file."""
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--params: {text} is neither a JSON object nor an existing file")
        source = path.read_text(encoding="utf-8")
    try:
        params = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(params, dict):
        raise ValueError("--params: expected a JSON object")
    return params


def _json_or_path(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return json.loads(Path(value).read_text(encoding="utf-8"))


def step_generate_files(params: dict[str, Any]) -> dict[str, Any]:
    from perilflow.kernel.inputs.generate import generate_files

    config, output_dir = need(params, "config", "output_dir")
    written = generate_files(config, output_dir, params.get("file_format", "bin"))
    return {"output_dir": str(output_dir), "files": sorted(written)}


def step_prepare(params: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    from perilflow.kernel.losses import prepare_run_directory

    oasis, run_dir, model_dir, analysis = need(params, "oasis_files_dir", "run_dir", "model_data_dir",
                                                "analysis_settings")
    model_settings = params.get("model_settings")
    settings = prepare_run_directory(
        oasis, run_dir, model_data_dir=model_dir, analysis_settings=_json_or_path(analysis),
        model_settings=_json_or_path(model_settings) if model_settings else None,
        gul_alloc_rule=int(params.get("gul_alloc_rule", 1)), il_alloc_rule=int(params.get("il_alloc_rule", 2)),
        ri_alloc_rule=int(params.get("ri_alloc_rule", 3)))
    return {"run_dir": str(run_dir), "settings": asdict(settings)}


def step_chunk(params: dict[str, Any]) -> dict[str, Any]:
    from perilflow.kernel.losses import generate_losses_chunk

    run_dir, index, n = need(params, "run_dir", "chunk_index", "n_chunks")
    return {"work_dir": str(generate_losses_chunk(run_dir, int(index), int(n)))}


def step_merge(params: dict[str, Any]) -> dict[str, Any]:
    from perilflow.kernel.losses import generate_losses_output

    run_dir, n = need(params, "run_dir", "n_chunks")
    out = generate_losses_output(run_dir, int(n))
    return {"output_dir": str(out), "files": sorted(p.name for p in out.iterdir())}


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "generate-files": step_generate_files, "prepare": step_prepare, "chunk": step_chunk, "merge": step_merge,
    **PIPELINE_STEPS,
}


def versions() -> dict[str, str]:
    """Versions of the worker's numerical stack (shown at /v2/models/{id}/versions/)."""
    out = {}
    for name in ("perilflow", "numpy", "numba", "pandas", "pyarrow", "ods-tools"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perilflow-worker", description="Perilflow model worker steps.")
    sub = parser.add_subparsers(dest="step", metavar="STEP")
    sub.required = True
    for name, fn in STEPS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or name).splitlines()[0] if fn.__doc__ else name)
        p.add_argument("--params", required=True, help="JSON object, or the path of a JSON file")
    sub.add_parser("versions", help="print the worker's versions as JSON")
    args = parser.parse_args(argv)
    if args.step == "versions":
        print(json.dumps(versions(), indent=2))
        return 0
    from perilflow.kernel.memory import tune_process_memory

    tune_process_memory()
    try:
        result = STEPS[args.step](load_params(args.params))
    except NoKeysError as exc:
        print(f"perilflow-worker {args.step}: no keys: {exc}", file=sys.stderr)
        return EXIT_NO_KEYS
    except (ValueError, FileNotFoundError) as exc:
        print(f"perilflow-worker {args.step}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:  # noqa: BLE001 - the step's log must hold the traceback
        traceback.print_exc()
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
