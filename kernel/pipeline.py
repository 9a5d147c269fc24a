"""The analysis steps as the platform runs them: storage URIs in, storage URIs out.

Each function here is one sub-task of an analysis run (OasisPlatform's v2 slugs) and is
what ``perilflow-worker <step> --params ...`` runs in a local process or a worker pod. A
step downloads what it needs into a scratch folder, calls the kernel, and uploads its
results (temporary name, then rename: see :mod:`perilflow.kernel.storage`), so steps of one
run may execute on different machines. They never touch a database.

Paths of model files (``model_data_dir``, ``lookup_config_json``, ...) may be relative: they
resolve against ``$PERILFLOW_MODEL_ROOT``, the folder where the worker finds its model data
(a volume mount in a pod, a local folder for the local backend).

=====================================  ===================================================
step                                   params
=====================================  ===================================================
pre-analysis-hook                      portfolio {location, account?, ri_info?, ri_scope?},
                                       exposure (output prefix) [, hook {module,
                                       class_name, settings}]
prepare-keys-file                      exposure, lookup_config_json [, lookup_data_dir],
                                       chunk_index, n_chunks, output (lookup-n.tar.gz)
collect-keys                           lookups [uris], output (prefix: keys.csv,
                                       keys-errors.csv)
write-input-files                      exposure, keys, output (inputs .tar.gz)
                                       [, model_settings_json, file_format,
                                       keys_errors, summaries (prefix for
                                       exposure_summary_report.json and
                                       exposure_summary_levels.json)]
prepare-losses-generation-directory    inputs, analysis_settings, model_data_dir, output
                                       (run_directory .tar.gz) [, model_settings_json,
                                       gul/il/ri_alloc_rule]
generate-losses-chunk                  run_directory, chunk_index, n_chunks, output
                                       (work-n.tar.gz)
generate-losses-output                 run_directory, works [uris], output (output
                                       .tar.gz)
generate-losses                        the prepare params + output: the whole losses
                                       stage in one process (run_mode v1)
=====================================  ===================================================
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perilflow.kernel import storage

OED_FILES = ("location", "account", "ri_info", "ri_scope")
MODEL_ROOT_ENV = "PERILFLOW_MODEL_ROOT"
WORK_DIR_ENV = "PERILFLOW_WORK_DIR"


class NoKeysError(ValueError):
    """The lookup returned no key for any location (the analysis ends INPUTS_GENERATION_NO_KEYS)."""


def need(params: dict[str, Any], *names: str) -> list[Any]:
    """The values of ``names`` in ``params``, or a ValueError naming every missing one."""
    missing = [n for n in names if params.get(n) is None]
    if missing:
        raise ValueError(f"--params: missing {missing}; the step needs {list(names)}")
    return [params[n] for n in names]


def model_path(value: str | os.PathLike | None) -> Path | None:
    """A model file's path: absolute as given, relative ones under ``$PERILFLOW_MODEL_ROOT``."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = Path(os.environ.get(MODEL_ROOT_ENV, ".")) / path
    return path


@contextmanager
def scratch(step: str) -> Iterator[Path]:
    """A private scratch folder for one step, removed afterwards (in ``$PERILFLOW_WORK_DIR`` if set)."""
    root = os.environ.get(WORK_DIR_ENV)
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{step}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _suffix(uri: str) -> str:
    name = str(uri).rsplit("/", 1)[-1].lower()
    return ".parquet" if name.endswith(".parquet") else ".csv"


def _fetch_exposure(prefix: str, folder: Path) -> dict[str, Path]:
    """The OED files stored under ``prefix`` by pre-analysis-hook, downloaded into ``folder``."""
    manifest = json.loads(storage.read_bytes(storage.join(prefix, "exposure.json")))
    return {kind: storage.fetch(storage.join(prefix, name), folder / name) for kind, name in manifest.items()}


def pre_analysis_hook(params: dict[str, Any]) -> dict[str, Any]:
    """Convert the OED files' amounts to the reporting currency (if ``currency`` names one), run the
    model's pre-analysis hook (if any), check the files and store them for the later steps."""
    from perilflow.kernel.oed import load_exposure

    portfolio, prefix = need(params, "portfolio", "exposure")
    if not portfolio.get("location"):
        raise ValueError("--params: portfolio.location is missing; upload a location file to the portfolio")
    with scratch("pre-analysis-hook") as work:
        local = {kind: storage.fetch(uri, work / "in" / f"{kind}{_suffix(uri)}")
                 for kind, uri in portfolio.items() if kind in OED_FILES and uri}
        currency = params.get("currency") or {}
        if currency.get("reporting_currency"):
            from perilflow.kernel.oed.currency import convert_exposure_files

            local = convert_exposure_files(local, currency["reporting_currency"], currency.get("conversion"),
                                           work / "converted")  # before the hook, as the reference
        hook = params.get("hook") or {}
        if hook.get("module"):
            from perilflow.kernel.inputs.hook import run_pre_analysis_hook_files

            local = run_pre_analysis_hook_files(
                local, module=model_path(hook["module"]), class_name=hook.get("class_name"),
                settings=hook.get("settings"), output_dir=work / "hooked")
        exposure = load_exposure(local["location"], local.get("account"), local.get("ri_info"), local.get("ri_scope"))
        manifest = {}
        for kind, path in sorted(local.items()):
            name = f"{kind}{path.suffix}"
            storage.put(path, storage.join(prefix, name))
            manifest[kind] = name
        storage.put_bytes(json.dumps(manifest).encode(), storage.join(prefix, "exposure.json"))
    return {"exposure": prefix, "locations": len(exposure.location), "files": manifest}


def prepare_keys_file(params: dict[str, Any]) -> dict[str, Any]:
    """Keys lookup for locations chunk ``chunk_index`` of ``n_chunks``: keys.csv + keys-errors.csv in a tarball."""
    import numpy as np

    from perilflow.kernel.lookup import run_lookup, write_keys, write_keys_errors
    from perilflow.kernel.oed import load_exposure

    prefix, config, index, n, output = need(params, "exposure", "lookup_config_json", "chunk_index", "n_chunks",
                                            "output")
    index, n = int(index), int(n)
    if not 0 <= index < n:
        raise ValueError(f"--params: chunk_index {index} is outside 0..{n - 1}")
    with scratch("prepare-keys-file") as work:
        files = _fetch_exposure(prefix, work / "exposure")
        # loc_id comes from the whole file, so the chunks' keys concatenate into the unchunked keys
        location = load_exposure(files["location"], validate=False).location
        rows = np.array_split(np.arange(len(location)), n)[index]
        keys, errors = run_lookup(model_path(config), location.iloc[rows], model_path(params.get("lookup_data_dir")))
        out = work / "out"
        out.mkdir()
        write_keys(out / "keys.csv", keys)
        write_keys_errors(out / "keys-errors.csv", errors)
        storage.put_tar(out, output, scratch=work)
    return {"output": output, "locations": len(rows), "keys": len(keys), "errors": len(errors)}


def collect_keys(params: dict[str, Any]) -> dict[str, Any]:
    """Concatenate the lookup chunks' keys (in chunk order) into keys.csv and keys-errors.csv."""
    import pandas as pd

    from perilflow.kernel.lookup import read_keys, read_keys_errors, write_keys, write_keys_errors

    lookups, prefix = need(params, "lookups", "output")
    with scratch("collect-keys") as work:
        keys, errors = [], []
        for n, uri in enumerate(lookups):
            folder = storage.fetch_tar(uri, work / f"lookup-{n}", scratch=work)
            keys.append(read_keys(folder / "keys.csv"))
            errors.append(read_keys_errors(folder / "keys-errors.csv"))
        # chunks hold row slices; loc_id follows the OED sort order, so sort as run_lookup does
        order = ["loc_id", "peril_id", "coverage_type"]
        all_keys = pd.concat(keys, ignore_index=True).sort_values(order, kind="stable").reset_index(drop=True)
        all_errors = pd.concat(errors, ignore_index=True).sort_values(order, kind="stable", na_position="last")
        all_errors = all_errors.reset_index(drop=True)
        write_keys(work / "keys.csv", all_keys)
        write_keys_errors(work / "keys-errors.csv", all_errors)
        storage.put(work / "keys.csv", storage.join(prefix, "keys.csv"))
        storage.put(work / "keys-errors.csv", storage.join(prefix, "keys-errors.csv"))
    if all_keys.empty:
        raise NoKeysError(f"the lookup found no key for any location ({len(all_errors)} rows in keys-errors.csv); "
                          "check the exposure's coordinates and perils against the model")
    return {"keys": storage.join(prefix, "keys.csv"), "keys_errors": storage.join(prefix, "keys-errors.csv"),
            "n_keys": len(all_keys), "n_errors": len(all_errors)}


def write_input_files(params: dict[str, Any]) -> dict[str, Any]:
    """The Oasis input files for the collected keys, stored as one tarball (OasisPlatform's input_file).

    The lookup validation and summary levels JSON files go into the tarball and, when
    ``summaries`` names a prefix, beside the keys files there (the API serves them from there).
    """
    from perilflow.kernel.inputs.exposure_summary import write_exposure_summaries
    from perilflow.kernel.inputs.generate import write_oasis_files
    from perilflow.kernel.lookup import read_keys, read_keys_errors
    from perilflow.kernel.oed import load_exposure

    prefix, keys_uri, output = need(params, "exposure", "keys", "output")
    settings_path = model_path(params.get("model_settings_json"))
    model_settings = json.loads(settings_path.read_text()) if settings_path else None
    with scratch("write-input-files") as work:
        files = _fetch_exposure(prefix, work / "exposure")
        exposure = load_exposure(files["location"], files.get("account"), files.get("ri_info"), files.get("ri_scope"))
        keys = read_keys(storage.fetch(keys_uri, work / "keys.csv"))
        errors = (read_keys_errors(storage.fetch(params["keys_errors"], work / "keys-errors.csv"))
                  if params.get("keys_errors") else None)
        inputs = work / "input"
        written = write_oasis_files(exposure, keys, inputs, model_settings=model_settings,
                                    file_format=params.get("file_format", "bin"))
        # the lookup validation and summary levels files: in the input tarball, and beside keys.csv
        summaries = write_exposure_summaries(inputs, exposure.location, keys, errors, exposure.account,
                                             reinsurance=exposure.ri_info is not None)
        written.update(summaries)
        if params.get("summaries"):
            for path in summaries.values():
                storage.put(path, storage.join(params["summaries"], path.name))
        shutil.copy2(work / "keys.csv", inputs / "keys.csv")
        for kind, path in files.items():
            shutil.copy2(path, inputs / f"{kind}{path.suffix}")
        storage.put_tar(inputs, output, scratch=work)
    return {"output": output, "files": sorted(written)}


def _prepare_run(params: dict[str, Any], work: Path) -> Path:
    from perilflow.kernel.losses import prepare_run_directory

    inputs, analysis, model_dir = need(params, "inputs", "analysis_settings", "model_data_dir")
    if not isinstance(analysis, dict):
        analysis = json.loads(storage.read_bytes(analysis))
    settings_path = model_path(params.get("model_settings_json"))
    model_settings = json.loads(settings_path.read_text()) if settings_path else None
    oasis = storage.fetch_tar(inputs, work / "input", scratch=work)
    run = work / "run"
    prepare_run_directory(oasis, run, model_data_dir=model_path(model_dir), analysis_settings=analysis,
                          model_settings=model_settings, gul_alloc_rule=int(params.get("gul_alloc_rule", 1)),
                          il_alloc_rule=int(params.get("il_alloc_rule", 2)),
                          ri_alloc_rule=int(params.get("ri_alloc_rule", 3)))
    return run


def prepare_losses_generation_directory(params: dict[str, Any]) -> dict[str, Any]:
    """Unpack the input files, resolve the run settings, and store the run directory."""
    (output,) = need(params, "output")
    with scratch("prepare-losses-generation-directory") as work:
        run = _prepare_run(params, work)
        storage.put_tar(run, output, scratch=work)
    return {"output": output}


def generate_losses_chunk(params: dict[str, Any]) -> dict[str, Any]:
    """Events chunk ``chunk_index`` of ``n_chunks``: mergeable partial results, stored as work-n.tar.gz."""
    from perilflow.kernel.losses import generate_losses_chunk as run_chunk

    run_uri, index, n, output = need(params, "run_directory", "chunk_index", "n_chunks", "output")
    with scratch("generate-losses-chunk") as work:
        run = storage.fetch_tar(run_uri, work / "run", scratch=work)
        folder = run_chunk(run, int(index), int(n))
        storage.put_tar(folder, output, scratch=work)
    return {"output": output}


def _merge(run: Path, n_chunks: int, output: str, work: Path) -> list[str]:
    from perilflow.kernel.losses import generate_losses_output

    out = generate_losses_output(run, n_chunks)
    names = sorted(p.name for p in out.iterdir())
    storage.put_tar(out, output, scratch=work)
    return names


def generate_losses_output(params: dict[str, Any]) -> dict[str, Any]:
    """Merge every chunk's partial results into the ORD outputs, stored as output.tar.gz."""
    run_uri, works, output = need(params, "run_directory", "works", "output")
    with scratch("generate-losses-output") as work:
        run = storage.fetch_tar(run_uri, work / "run", scratch=work)
        for n, uri in enumerate(works):
            storage.fetch_tar(uri, run / "work" / f"chunk-{n}", scratch=work)
        names = _merge(run, len(works), output, work)
    return {"output": output, "files": names}


def generate_losses(params: dict[str, Any]) -> dict[str, Any]:
    """run_mode v1: prepare, every event in one chunk (all cores through the kernel's threads), merge."""
    from perilflow.kernel.losses import generate_losses_chunk as run_chunk

    (output,) = need(params, "output")
    with scratch("generate-losses") as work:
        run = _prepare_run(params, work)
        run_chunk(run, 0, 1)
        names = _merge(run, 1, output, work)
    return {"output": output, "files": names}


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "pre-analysis-hook": pre_analysis_hook,
    "prepare-keys-file": prepare_keys_file,
    "collect-keys": collect_keys,
    "write-input-files": write_input_files,
    "prepare-losses-generation-directory": prepare_losses_generation_directory,
    "generate-losses-chunk": generate_losses_chunk,
    "generate-losses-output": generate_losses_output,
    "generate-losses": generate_losses,
}
