"""The Python sub-tasks of an analysis run (params, record, cleanup) and the failure callback.

They run on Airflow workers, read the run conf and XCom, read and write shared storage,
and never touch a database. The model steps in between are ``ModelStepOperator`` tasks.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from perilflow.operators import storage
from perilflow.operators.chunking import count_events
from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import RUNTIME_KEY
from perilflow.operators.plan import input_generation_plan, losses_generation_plan
from perilflow.operators.runconf import parse_conf

log = logging.getLogger(__name__)

CLEANUP_PREFIX = "cleanup-"


def _conf(context: dict[str, Any]) -> dict[str, Any]:
    """The run conf with the DAG's param defaults filled in."""
    params = dict(context.get("params") or {})
    conf = (context["dag_run"].conf or {}) if context.get("dag_run") is not None else {}
    params.update(conf)
    return params


def _run_uuid(conf: dict[str, Any], context: dict[str, Any]) -> str:
    if conf.get("run_uuid"):
        return str(conf["run_uuid"])
    ti = context["ti"]
    return storage.run_uuid_for(ti.dag_id, ti.run_id)


def prepare_input_generation_params(stage: str = "inputs", **context: Any) -> dict[str, Any]:
    """Check the conf, count the locations, plan the lookup chunks and every step's params."""
    cfg = PlatformConfig.from_env()
    raw = _conf(context)
    conf = parse_conf(raw, stage)
    locations = storage.count_location_rows(cfg, conf.portfolio["location"])
    plan = input_generation_plan(conf, cfg, _run_uuid(raw, context), locations)
    log.info("analysis %s: %d locations in %d lookup chunks, files in %s", conf.analysis_id, locations,
             plan["n_lookup_chunks"], plan["folder"])
    return plan


def _model_settings(cfg: PlatformConfig, model: dict[str, Any]) -> dict[str, Any] | None:
    name = model.get("model_settings_json")
    if not name:
        return None
    path = cfg.model_root / name
    if not path.is_file():  # the Airflow worker may not see the model volume; chunking then needs FIXED_CHUNKS
        return None
    return json.loads(path.read_text())


def prepare_losses_generation_params(stage: str = "losses", inputs: dict[str, Any] | None = None,
                                     **context: Any) -> dict[str, Any]:
    """Check the conf, store the analysis settings, plan the loss chunks and every step's params.

    ``inputs`` is the record of the input generation of the same run (generate_and_run).
    """
    cfg = PlatformConfig.from_env()
    raw = _conf(context)
    conf = parse_conf(raw, stage)
    input_file = (inputs or {}).get("input_file") or conf.input_file
    if not input_file:
        raise ValueError("run conf: input_file is missing; run input generation first or give its URI")
    settings = conf.analysis_settings
    if isinstance(settings, str):
        settings_dict = json.loads(storage.read_text(cfg, settings))
    else:
        settings_dict = dict(settings or {})
    events = count_events(settings_dict, _model_settings(cfg, dict(conf.model)))
    plan = losses_generation_plan(conf, cfg, _run_uuid(raw, context), input_file, events)
    if plan["analysis_settings"] is not None:
        storage.write_text(cfg, plan["analysis_settings_uri"], plan["analysis_settings"])
    log.info("analysis %s: run_mode %s, %d loss chunks (%s events), files in %s", conf.analysis_id, conf.run_mode,
             plan["n_loss_chunks"], events if events is not None else "unknown", plan["folder"])
    return plan


def _record(record: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    cfg = PlatformConfig.from_env()
    missing = [record[key] for key in required if not storage.path(cfg, record[key]).exists()]
    if missing:
        raise FileNotFoundError(f"the run finished without writing {missing}; see the logs of the steps before")
    storage.write_text(cfg, f"{record['folder']}/record.json", json.dumps(record, indent=2, sort_keys=True))
    return record


def record_input_files(record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Check the input files exist and write the run's record (the API reads it when the run ends)."""
    return _record(record, ("input_file", "lookup_success_file", "lookup_errors_file"))


def record_losses_files(record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Check the output tarball exists and write the run's record."""
    return _record(record, ("output_file",))


def cleanup(plan: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Gather failed steps' errors into traceback.txt, then remove the run's temporary files (teardown).

    A run that failed (a step's error is in ``errors/`` and nothing was recorded) keeps them:
    a resume (``POST /v2/analyses/{id}/resume/``) re-runs only the failed steps, which read
    the run directory and the finished chunks' files; the resumed run's cleanup removes them.
    """
    cfg = PlatformConfig.from_env()
    folder = plan["folder"]
    errors = storage.listdir(cfg, f"{folder}/errors")
    if errors:
        text = "\n\n".join(f"==> {name} <==\n{storage.read_text(cfg, f'{folder}/errors/{name}')}" for name in errors)
        storage.write_text(cfg, plan["traceback"], text)
    resumable = bool(errors) and "record.json" not in storage.listdir(cfg, folder)
    removed = []
    if not cfg.keep_remote_data and not resumable:
        removed = [name for name in plan["temporary"] if storage.remove(cfg, f"{folder}/{name}")]
    return {"removed": removed, "traceback": plan["traceback"] if errors else None}


def _step_folder(context: dict[str, Any]) -> str | None:
    params = getattr(context.get("task"), "step_params", None)
    if isinstance(params, dict):
        return (params.get(RUNTIME_KEY) or {}).get("folder")
    return None


def on_step_failure(context: dict[str, Any]) -> None:
    """A sub-task failed for good: keep its error for the traceback file, stop the rest of the run.

    The other unfinished sub-tasks (mapped siblings included; ``fail_fast`` does not stop
    those) are set to ``skipped`` through the REST API, which ends their processes within
    seconds; tasks still waiting for their upstream are left to end ``upstream_failed``, so
    the run ends failed; cleanup is a teardown, so it still runs.
    """
    from perilflow.operators.airflow_api import UNFINISHED, AirflowApi, AirflowApiError

    ti = context["ti"]
    label = ti.task_id if ti.map_index < 0 else f"{ti.task_id}-{ti.map_index}"
    folder = _step_folder(context)
    cfg = PlatformConfig.from_env()
    if folder:
        try:
            storage.write_text(cfg, f"{folder}/errors/{storage.safe_name(label)}.log",
                               f"{label} (try {ti.try_number}): {context.get('exception')}\n")
        except Exception:  # noqa: BLE001 - storage may be what failed; stopping the run matters more
            log.exception("could not store the error of %s", label)
    try:
        with AirflowApi(cfg.api_url) as api:
            # Record this task's failure first. The task process reports it only when it exits, after
            # this callback; a scheduler pass in between that saw skipped siblings and this task still
            # running would skip the steps downstream (all_success with a skipped upstream) instead of
            # failing them, and the run would end "success". (The supervisor stops heartbeating once the
            # task has its final state, so this does not get the task killed; its own report later is a
            # duplicate the server accepts.)
            try:
                api.set_task_state(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, "failed")
            except AirflowApiError as exc:
                log.warning("could not record the failure of %s before stopping the others: %s", label, exc)
            for other in api.task_instances(ti.dag_id, ti.run_id):
                sibling = other["task_id"] == ti.task_id
                same = sibling and other["map_index"] == ti.map_index
                # A task not yet scheduled (state None) waits for others, e.g. the merge and record steps
                # downstream of this one: the scheduler marks it upstream_failed, which keeps the run failed.
                # Skipping it would end the run "success" (its leaves skipped, the teardown done).
                waiting = other["state"] in (None, "none") and not sibling
                if same or waiting or other["task_id"].startswith(CLEANUP_PREFIX) or other["state"] not in UNFINISHED:
                    continue
                api.set_task_state(ti.dag_id, ti.run_id, other["task_id"], other["map_index"], "skipped")
                log.info("stopped %s[%s] (was %s)", other["task_id"], other["map_index"], other["state"])
    except AirflowApiError as exc:
        log.warning("could not stop the rest of the run through the API: %s", exc)
