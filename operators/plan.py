"""What every sub-task of a run does: the params of each worker step, decided once.

``prepare-input-generation-params`` and ``prepare-losses-generation-params`` call
:func:`input_generation_plan` and :func:`losses_generation_plan`; the result is pushed as
XCom (one key per step) and each model-step task reads its params from there, mapped
steps one element per chunk. Plain data, no Airflow: these functions are unit-tested
directly.
"""

from __future__ import annotations

import json
from typing import Any

from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import RUNTIME_KEY
from perilflow.operators.runconf import RunConf
from perilflow.operators.storage import folder_uri


def runtime_of(conf: RunConf, cfg: PlatformConfig, folder: str) -> dict[str, Any]:
    """The pod settings every step of the run gets (see ``model_step.configure_pod``)."""
    model = conf.model
    return {
        "analysis_id": conf.analysis_id,
        "backend": model.get("backend") or cfg.backend,
        "worker_image": model.get("worker_image") or cfg.worker_image,
        "worker_command": model.get("worker_command"),
        "resources": model.get("resources") or {},
        "node_selector": model.get("node_selector") or {},
        "env": model.get("env") or {},
        "folder": folder,
    }


def _with_runtime(params: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    return {**params, RUNTIME_KEY: runtime}


def input_generation_plan(conf: RunConf, cfg: PlatformConfig, run_uuid: str, locations: int) -> dict[str, Any]:
    """Params of every input-generation step for ``locations`` location rows."""
    model = conf.model
    files = folder_uri(cfg, conf.analysis_id, "files", run_uuid)
    runtime = runtime_of(conf, cfg, files)
    exposure = f"{files}/exposure"
    n = conf.chunking.lookup_chunks(locations)
    lookups = [f"{files}/lookup-{i}.tar.gz" for i in range(n)]
    input_file = f"{files}/input.tar.gz"
    return {
        "folder": files,
        "n_lookup_chunks": n,
        "hook": _with_runtime({"portfolio": dict(conf.portfolio), "exposure": exposure,
                               "hook": model.get("hook"), "currency": dict(conf.currency) or None}, runtime),
        "lookups": [_with_runtime({"exposure": exposure, "lookup_config_json": model["lookup_config_json"],
                                   "lookup_data_dir": model.get("lookup_data_dir"), "chunk_index": i,
                                   "n_chunks": n, "output": uri}, runtime) for i, uri in enumerate(lookups)],
        "collect": _with_runtime({"lookups": lookups, "output": files}, runtime),
        "write": _with_runtime({"exposure": exposure, "keys": f"{files}/keys.csv",
                                "keys_errors": f"{files}/keys-errors.csv", "summaries": files,
                                "model_settings_json": model.get("model_settings_json"),
                                "file_format": model.get("file_format", "bin"), "output": input_file}, runtime),
        "record": {"analysis_id": conf.analysis_id, "folder": files, "input_file": input_file,
                   "lookup_success_file": f"{files}/keys.csv", "lookup_errors_file": f"{files}/keys-errors.csv",
                   "lookup_validation_file": f"{files}/exposure_summary_report.json",
                   "summary_levels_file": f"{files}/exposure_summary_levels.json",
                   "n_lookup_chunks": n, "locations": locations},
        "cleanup": {"folder": files, "temporary": ["exposure", *(f"lookup-{i}.tar.gz" for i in range(n))],
                    "traceback": f"{files}/traceback.txt"},
    }


def losses_generation_plan(conf: RunConf, cfg: PlatformConfig, run_uuid: str, input_file: str,
                           events: int | None) -> dict[str, Any]:
    """Params of every losses step; ``events`` (None when unknown) sizes DYNAMIC_CHUNKS.

    ``n_events`` (the run's event count, None when unknown) is pushed for the API's
    ``num_events_total``.
    """
    model = conf.model
    losses = folder_uri(cfg, conf.analysis_id, "losses", run_uuid)
    runtime = runtime_of(conf, cfg, losses)
    run_directory = f"{losses}/run_directory.tar.gz"
    output = f"{losses}/output.tar.gz"
    settings = conf.analysis_settings
    settings_uri = settings if isinstance(settings, str) else f"{losses}/analysis_settings.json"
    prepare = {"inputs": input_file, "analysis_settings": settings_uri, "model_data_dir": model["model_data_dir"],
               "model_settings_json": model.get("model_settings_json")}
    for rule in ("gul_alloc_rule", "il_alloc_rule", "ri_alloc_rule"):
        if model.get(rule) is not None:
            prepare[rule] = int(model[rule])
    v2 = conf.run_mode == "v2"
    n = conf.chunking.loss_chunks(events) if v2 else 1
    works = [f"{losses}/work-{i}.tar.gz" for i in range(n)] if v2 else []
    plan: dict[str, Any] = {
        "folder": losses,
        "run_mode": conf.run_mode,
        "n_loss_chunks": n,
        "n_events": events,
        "analysis_settings": None if isinstance(settings, str) else json.dumps(settings, sort_keys=True, indent=2),
        "analysis_settings_uri": settings_uri,
        "prepare": _with_runtime({**prepare, "output": run_directory}, runtime) if v2 else None,
        "chunks": [_with_runtime({"run_directory": run_directory, "chunk_index": i, "n_chunks": n, "output": uri},
                                 runtime) for i, uri in enumerate(works)],
        "merge": _with_runtime({"run_directory": run_directory, "works": works, "output": output}, runtime)
        if v2 else None,
        "v1": None if v2 else _with_runtime({**prepare, "output": output}, runtime),
        "record": {"analysis_id": conf.analysis_id, "folder": losses, "output_file": output, "run_mode": conf.run_mode,
                   "n_loss_chunks": n, "input_file": input_file},
        "cleanup": {"folder": losses, "temporary": ["run_directory.tar.gz", *(f"work-{i}.tar.gz" for i in range(n))],
                    "traceback": f"{losses}/traceback.txt"},
    }
    return plan
