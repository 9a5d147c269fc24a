"""The run conf of an analysis DAG run: its ``Param`` schema and the typed view tasks use.

A run is triggered (by the REST API, ``airflow dags trigger --conf`` or the batch DAG)
with a conf naming the analysis::

    {
      "analysis_id": 42,
      "model": {"id": "OasisLMF/PiWind/1", "model_data_dir": "PiWind/model_data",
                "lookup_config_json": "PiWind/keys_data/lookup_config.json",
                "lookup_data_dir": "PiWind/keys_data", "model_settings_json": "PiWind/model_settings.json",
                "chunking": {...}, "worker_image": "...", "resources": {...}, "pool": "..."},
      "portfolio": {"location": "<uri>", "account": "<uri>", "ri_info": "<uri>", "ri_scope": "<uri>"},
      "analysis_settings": {...},            # or the URI of the JSON file
      "input_file": "<uri of inputs .tar.gz>",   # losses-only runs
      "chunking": {...},                     # per-analysis override of the model's options
      "run_mode": "v2", "priority": 4
    }

Model file paths are relative to the model root (``PERILFLOW_MODEL_ROOT``) or absolute.
Airflow validates the conf against :func:`run_params` when the run is triggered, so a bad
conf is refused with a message naming the field; :func:`parse_conf` re-checks what a JSON
schema cannot (which fields each DAG needs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perilflow.operators.chunking import STRATEGIES, ChunkingOptions

#: the analysis DAGs (built in perilflow.operators.workflows); kept here so that readers of run
#: confs (the API) need not import the DAG builders and KubernetesPodOperator with them
INPUT_GENERATION = "perilflow_input_generation"
LOSSES_GENERATION = "perilflow_losses_generation"
GENERATE_AND_RUN = "perilflow_generate_and_run"
DAG_IDS = (INPUT_GENERATION, LOSSES_GENERATION, GENERATE_AND_RUN)
TAG = "perilflow"
RUN_MODES = ("v1", "v2")
_CHUNKING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "lookup_strategy": {"enum": list(STRATEGIES)},
        "loss_strategy": {"enum": list(STRATEGIES)},
        **{name: {"type": "integer", "minimum": 1} for name in (
            "fixed_lookup_chunks", "fixed_analysis_chunks", "dynamic_locations_per_lookup",
            "dynamic_events_per_analysis", "dynamic_chunks_max")},
    },
}
_MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "model_data_dir"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "model_data_dir": {"type": "string", "minLength": 1},
        "lookup_config_json": {"type": "string"},
        "lookup_data_dir": {"type": "string"},
        "model_settings_json": {"type": "string"},
        "hook": {"type": "object"},
        "chunking": _CHUNKING_SCHEMA,
        "worker_image": {"type": "string"},
        "worker_command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "resources": {"type": "object"},
        "node_selector": {"type": "object"},
        "env": {"type": "object"},
        "pool": {"type": "string"},
        "backend": {"enum": ["local", "kubernetes"]},
    },
}
_PORTFOLIO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["location"],
    "additionalProperties": False,
    "properties": {name: {"type": "string", "minLength": 1} for name in ("location", "account", "ri_info",
                                                                          "ri_scope")},
}
#: the portfolio's reporting currency and rates of exchange (perilflow.kernel.oed.currency)
_CURRENCY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reporting_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "conversion": {"type": ["object", "null"]},
    },
}


def run_params(stage: str) -> dict[str, Any]:
    """The ``params`` of a Perilflow DAG (stage: inputs, losses or both), as Airflow ``Param`` objects."""
    from airflow.sdk import Param

    params: dict[str, Any] = {
        "analysis_id": Param(1, type="integer", minimum=1, description="the analysis this run belongs to"),
        "model": Param({"id": "", "model_data_dir": ""}, schema=_MODEL_SCHEMA,
                       description="the model: id, files (relative to the model root), chunking, runtime"),
        "chunking": Param({}, schema=_CHUNKING_SCHEMA, description="per-analysis override of the model's chunking"),
        "priority": Param(4, type="integer", minimum=1, maximum=10, description="1 (lowest) to 10 (highest)"),
        "run_uuid": Param(None, type=["null", "string"], pattern="^[0-9a-f]{8,32}$",
                          description="storage folder suffix; default: derived from the run id"),
    }
    if stage in ("inputs", "both"):
        params["portfolio"] = Param({"location": ""}, schema=_PORTFOLIO_SCHEMA,
                                    description="OED files: storage URIs or paths")
        params["currency"] = Param({}, schema=_CURRENCY_SCHEMA,
                                   description="amounts converted to reporting_currency with the conversion's "
                                               "rates before input generation (empty: no conversion)")
    if stage in ("losses", "both"):
        params["analysis_settings"] = Param({}, type=["object", "string"],
                                            description="analysis settings (object or URI of the JSON file)")
        params["run_mode"] = Param("v2", enum=list(RUN_MODES),
                                   description="v1: one losses task on all cores; v2: mapped chunks")
    if stage == "losses":
        params["input_file"] = Param("", type="string", description="URI of the inputs tarball to run on")
    return params


@dataclass(frozen=True)
class RunConf:
    """The conf of one run, checked."""

    analysis_id: int
    model: Mapping[str, Any]
    priority: int = 4
    run_mode: str = "v2"
    portfolio: Mapping[str, str] = field(default_factory=dict)
    currency: Mapping[str, Any] = field(default_factory=dict)
    analysis_settings: Mapping[str, Any] | str | None = None
    input_file: str | None = None
    chunking: ChunkingOptions = field(default_factory=ChunkingOptions)
    run_uuid: str | None = None

    @property
    def model_id(self) -> str:
        return str(self.model["id"])


def _required(conf: Mapping[str, Any], name: str, what: str) -> Any:
    value = conf.get(name)
    if value in (None, "", {}):
        raise ValueError(f"run conf: '{name}' is missing; give {what}")
    return value


def _currency(currency: Any) -> dict[str, Any]:
    """The checked ``currency`` of a conf: {} (no conversion) or reporting_currency [+ conversion]."""
    from perilflow.kernel.oed.currency import check_conversion, check_reporting_currency

    if not currency:
        return {}
    if not isinstance(currency, Mapping) or not currency.get("reporting_currency"):
        raise ValueError("run conf: currency needs reporting_currency (e.g. {'reporting_currency': 'USD', "
                         "'conversion': {...}})")
    try:
        checked = {"reporting_currency": check_reporting_currency(currency["reporting_currency"])}
        if currency.get("conversion"):
            checked["conversion"] = check_conversion(currency["conversion"])
    except ValueError as exc:
        raise ValueError(f"run conf: currency: {exc}") from None
    return checked


def parse_conf(conf: Mapping[str, Any], stage: str) -> RunConf:
    """Check a run conf for ``stage`` (inputs, losses, both) and return it typed."""
    analysis_id = _required(conf, "analysis_id", "the analysis id (an integer >= 1)")
    if isinstance(analysis_id, bool) or not isinstance(analysis_id, int) or analysis_id < 1:
        raise ValueError(f"run conf: analysis_id is {analysis_id!r}; give an integer >= 1")
    model = _required(conf, "model", "the model object (id, model_data_dir, ...)")
    for key in ("id", "model_data_dir"):
        if not model.get(key):
            raise ValueError(f"run conf: model.{key} is missing; give it in the model object")
    if stage in ("inputs", "both"):
        portfolio = _required(conf, "portfolio", "the portfolio's OED files ({'location': uri, ...})")
        if not portfolio.get("location"):
            raise ValueError("run conf: portfolio.location is missing; upload a location file first")
        if not model.get("lookup_config_json"):
            raise ValueError("run conf: model.lookup_config_json is missing; input generation needs the model's "
                             "lookup config")
        currency = _currency(conf.get("currency"))
    if stage in ("losses", "both"):
        _required(conf, "analysis_settings", "the analysis settings (object or URI)")
    if stage == "losses":
        _required(conf, "input_file", "the URI of the inputs tarball (from input generation)")
    run_mode = conf.get("run_mode") or "v2"
    if run_mode not in RUN_MODES:
        raise ValueError(f"run conf: run_mode is {run_mode!r}; use one of {list(RUN_MODES)}")
    priority = conf.get("priority", 4)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ValueError(f"run conf: priority is {priority!r}; give an integer from 1 to 10")
    run_uuid = conf.get("run_uuid")
    if run_uuid is not None and not re.fullmatch(r"[0-9a-f]{8,32}", str(run_uuid)):
        raise ValueError(f"run conf: run_uuid {run_uuid!r} must be 8-32 lowercase hex digits")
    return RunConf(
        analysis_id=analysis_id, model=model, priority=priority, run_mode=run_mode,
        portfolio=conf.get("portfolio") or {}, currency=currency if stage in ("inputs", "both") else {},
        analysis_settings=conf.get("analysis_settings"),
        input_file=conf.get("input_file") or None,
        chunking=ChunkingOptions.from_dicts(model.get("chunking"), conf.get("chunking")),
        run_uuid=run_uuid)
