"""Request bodies (pydantic) with OasisPlatform v2 field names; replies are built as dicts by the routers."""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

Name = Field(min_length=1, max_length=255)


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supplier_id: str = Name
    model_id: str = Name
    version_id: str = Name
    data_files: list[int] = Field(default_factory=list)
    groups: list[str] | None = None
    run_mode: Literal["V1", "V2"] | None = None
    runtime: dict[str, Any] | None = Field(
        default=None, description="the run conf's model object: model_data_dir, lookup_config_json, "
        "lookup_data_dir, model_settings_json, worker_image, resources, pool, ... (paths relative to the model root)")


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supplier_id: str | None = Field(default=None, min_length=1, max_length=255)
    model_id: str | None = Field(default=None, min_length=1, max_length=255)
    version_id: str | None = Field(default=None, min_length=1, max_length=255)
    data_files: list[int] | None = None
    groups: list[str] | None = None
    run_mode: Literal["V1", "V2"] | None = None
    runtime: dict[str, Any] | None = None


class ChunkingIn(BaseModel):
    """OasisPlatform's ModelChunkingOptions."""

    model_config = ConfigDict(extra="forbid")

    lookup_strategy: Literal["FIXED_CHUNKS", "DYNAMIC_CHUNKS"] = "FIXED_CHUNKS"
    loss_strategy: Literal["FIXED_CHUNKS", "DYNAMIC_CHUNKS"] = "FIXED_CHUNKS"
    fixed_lookup_chunks: int = Field(default=1, ge=1)
    fixed_analysis_chunks: int = Field(default=1, ge=1)
    dynamic_locations_per_lookup: int = Field(default=10_000, ge=1)
    dynamic_events_per_analysis: int = Field(default=1, ge=1)
    dynamic_chunks_max: int = Field(default=200, ge=1)


class ScalingIn(BaseModel):
    """OasisPlatform's ModelScalingOptions (stored; Airflow pools and executors do the scaling)."""

    model_config = ConfigDict(extra="forbid")

    scaling_strategy: Literal["FIXED_WORKERS", "QUEUE_LOAD", "DYNAMIC_TASKS"] = "FIXED_WORKERS"
    worker_count_fixed: StrictInt = Field(default=1, ge=0)
    worker_count_max: StrictInt = Field(default=10, ge=0)
    worker_count_min: StrictInt = Field(default=0, ge=0)
    chunks_per_worker: StrictInt = Field(default=10, ge=1)


class DataFileLinksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_files: list[int]


class TemplateIn(BaseModel):
    """A settings template: ``file`` is the analysis settings JSON, or ``analysis_id`` copies an analysis's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Name
    description: str = Field(default="", max_length=10_000)
    file: dict[str, Any] | None = None
    analysis_id: int | None = None


class TemplatePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    file: dict[str, Any] | None = None


class PortfolioIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Name
    groups: list[str] | None = None


class PortfolioPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    groups: list[str] | None = None


class CreateAnalysisIn(BaseModel):
    name: str = Name
    model: int
    groups: list[str] | None = None


class AnalysisIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Name
    portfolio: int
    model: int
    priority: int = Field(default=4, ge=1, le=10)
    complex_model_data_files: list[int] = Field(default_factory=list)
    settings: dict[str, Any] | None = None


class AnalysisPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    portfolio: int | None = None
    model: int | None = None
    priority: int | None = Field(default=None, ge=1, le=10)
    complex_model_data_files: list[int] | None = None
    settings: dict[str, Any] | None = None


class TokenIn(BaseModel):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


@functools.cache
def settings_handler(kind: str) -> Any:
    """ods-tools' settings handler for ``kind`` (analysis or model), made once per process.

    Making one reads and parses its JSON schema files (~1.4 ms); a handler keeps no state between
    ``validate`` calls but the ``raise_warnings`` flag, always False here, so requests share it.
    """
    from ods_tools.oed.settings import AnalysisSettingHandler, ModelSettingHandler

    return {"analysis": AnalysisSettingHandler, "model": ModelSettingHandler}[kind].make()


def ods_settings_errors(handler: Any, data: dict[str, Any]) -> dict[str, list[str]]:
    """ods-tools' validation of settings ``data`` (``handler``: an ods-tools SettingHandler): ``{field: [messages]}``.

    ods-tools runs its extra checks before the JSON schema, and they raise on wrong types
    (``'bool' object is not iterable``); then the schema alone names the fields that are wrong.
    """
    import jsonschema

    try:
        ok, errors = handler.validate(data, raise_error=False)
    except Exception as exc:  # noqa: BLE001 - ods-tools raises several types on malformed input
        schema = handler.get_schema(f"{handler.settings_type}_schema")
        errors = {}
        for err in jsonschema.Draft202012Validator(schema).iter_errors(data):
            path = ".".join(str(part) for part in err.absolute_path)
            names = [path] if path else []
            if err.validator == "required" and isinstance(err.instance, dict):
                names = [f"{path}.{name}" if path else name for name in err.validator_value if name not in err.instance]
            for name in names or ["non_field_errors"]:
                errors.setdefault(name, []).append(err.message)
        if not errors:
            errors = {"non_field_errors": [f"the settings could not be checked ({type(exc).__name__}: {exc})"]}
        return errors
    return {} if ok else {str(k): [str(m) for m in v] for k, v in errors.items()}
