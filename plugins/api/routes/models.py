"""``/v2/models/``: CRUD (DELETE is soft), settings, chunking and scaling configuration, versions,
linked data files, storage links and the analysis-settings templates (``setting_templates/``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from perilflow.plugins.api.auth import (
    Caller,
    CallerDep,
    DbDep,
    SettingsDep,
    api_base,
    get_changeable,
    get_visible,
    resolve_groups,
    visible,
)
from perilflow.plugins.api.pagination import LimitQuery, OffsetQuery, paginate
from perilflow.plugins.api.schemas import (
    ChunkingIn,
    DataFileLinksIn,
    ModelIn,
    ModelPatch,
    ScalingIn,
    TemplateIn,
    TemplatePatch,
)
from perilflow.plugins.db.models import Analysis, Model, SettingsTemplate

router = APIRouter(prefix="/v2/models", tags=["models"])
WHAT = "model"


def model_json(request: Request, model: Model) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/models/{model.id}"
    return {
        "id": model.id, "supplier_id": model.supplier_id, "model_id": model.model_id, "version_id": model.version_id,
        "created": model.created, "modified": model.modified, "data_files": [d.id for d in model.data_files],
        "settings": f"{base}/settings/", "versions": f"{base}/versions/",
        "scaling_configuration": f"{base}/scaling_configuration/",
        "chunking_configuration": f"{base}/chunking_configuration/",
        "groups": sorted(g.name for g in model.groups), "run_mode": model.run_mode, "runtime": model.runtime or {},
    }


@router.get("/", summary="List models (filters: supplier_id, model_id, version_id and their __contains; "
                         "limit/offset pagination when limit is given)", response_model=None)
def list_models(request: Request, db: DbDep, caller: CallerDep, supplier_id: str | None = None,
                model_id: str | None = None, version_id: str | None = None,
                supplier_id__contains: str | None = None, model_id__contains: str | None = None,
                version_id__contains: str | None = None, limit: LimitQuery = None, offset: OffsetQuery = 0
                ) -> list[dict[str, Any]] | dict[str, Any]:
    stmt = select(Model).where(Model.deleted.is_(False)).order_by(Model.id)
    clause = visible(Model, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    for column, exact, part in ((Model.supplier_id, supplier_id, supplier_id__contains),
                                (Model.model_id, model_id, model_id__contains),
                                (Model.version_id, version_id, version_id__contains)):
        if exact is not None:
            stmt = stmt.where(column == exact)
        if part is not None:
            stmt = stmt.where(column.contains(part, autoescape=True))
    return paginate(request, db, stmt, limit, offset, lambda m: model_json(request, m))


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create a model (re-activates a deleted one)")
def create_model(request: Request, body: ModelIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    existing = db.scalar(select(Model).where(Model.supplier_id == body.supplier_id, Model.model_id == body.model_id,
                                             Model.version_id == body.version_id))
    if existing is not None and not existing.deleted:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"non_field_errors": [
            f"model {body.supplier_id}/{body.model_id}/{body.version_id} exists (id {existing.id})"]})
    model = existing or Model(supplier_id=body.supplier_id, model_id=body.model_id, version_id=body.version_id)
    model.deleted = False
    model.creator = caller.name
    model.run_mode = body.run_mode
    _check_runtime(body.runtime, caller)
    model.runtime = body.runtime
    model.groups = resolve_groups(db, body.groups, caller)
    model.data_files = _data_files(db, body.data_files, caller)
    db.add(model)
    db.flush()
    return model_json(request, model)


# Runtime keys that choose what code runs and with which environment: on the local backend that code runs on the
# Airflow worker host (where airflow.cfg and the services' credentials may be readable), so only admins set them.
EXECUTION_KEYS = ("worker_command", "worker_image", "env")


def _check_runtime(runtime: dict[str, Any] | None, caller: Caller, current: dict[str, Any] | None = None) -> None:
    changed = [key for key in EXECUTION_KEYS if (runtime or {}).get(key) != (current or {}).get(key)]
    if changed and not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, {"runtime": [
            f"runtime.{', runtime.'.join(changed)} choose the code a model runs; only admins may set or change "
            "them: leave them out (the platform's worker image and command are used) or ask an admin"]})


def _data_files(db: Session, ids: list[int], caller: Caller) -> list[Any]:
    from perilflow.plugins.api.routes.analyses import data_files_for

    return data_files_for(db, ids, caller, "data_files")


@router.get("/{model_pk}/", summary="One model")
def get_model(request: Request, model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return model_json(request, get_visible(db, Model, model_pk, caller, WHAT))


def _update(request: Request, model_pk: int, body: ModelPatch, db: DbDep, caller: CallerDep,
            partial: bool) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    fields = body.model_dump(exclude_unset=partial)
    if "runtime" in fields:
        _check_runtime(fields["runtime"], caller, model.runtime)
    for name in ("supplier_id", "model_id", "version_id", "run_mode", "runtime"):
        if name in fields and (fields[name] is not None or name in ("run_mode", "runtime")):
            setattr(model, name, fields[name])
    if "groups" in body.model_fields_set:  # a PUT without groups keeps them (put_model)
        model.groups = resolve_groups(db, fields["groups"], caller)
    if fields.get("data_files") is not None:
        model.data_files = _data_files(db, fields["data_files"], caller)
    db.flush()
    return model_json(request, model)


@router.put("/{model_pk}/", summary="Replace a model's fields")
def put_model(request: Request, model_pk: int, body: ModelIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    # a PUT without groups keeps the model's own (as the reference, DRF): they became the caller's, so an
    # admin's PUT made the model visible to everyone
    keep = set() if "groups" in body.model_fields_set else {"groups"}
    return _update(request, model_pk, ModelPatch(**body.model_dump(exclude=keep)), db, caller, partial=False)


@router.patch("/{model_pk}/", summary="Change some of a model's fields")
def patch_model(request: Request, model_pk: int, body: ModelPatch, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return _update(request, model_pk, body, db, caller, partial=True)


@router.delete("/{model_pk}/", status_code=status.HTTP_204_NO_CONTENT, summary="Soft-delete a model")
def delete_model(model_pk: int, db: DbDep, caller: CallerDep) -> Response:
    get_changeable(db, Model, model_pk, caller, WHAT).deleted = True
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{model_pk}/settings/", summary="The model settings JSON")
def get_settings(model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    if model.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_pk} has no settings")
    return model.settings


def validate_model_settings(data: dict[str, Any]) -> dict[str, list[str]]:
    from perilflow.plugins.api.schemas import ods_settings_errors, settings_handler

    return ods_settings_errors(settings_handler("model"), data)


@router.post("/{model_pk}/settings/", summary="Set the model settings (ods-tools ModelSettings schema)")
def post_settings(model_pk: int, db: DbDep, caller: CallerDep,
                  data: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    errors = validate_model_settings(data)
    if errors:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, errors)
    model.settings = data
    run_mode = data.get("model_run_mode")
    if run_mode in ("V1", "V2"):
        model.run_mode = run_mode
    return data


@router.delete("/{model_pk}/settings/", status_code=status.HTTP_204_NO_CONTENT)
def delete_settings(model_pk: int, db: DbDep, caller: CallerDep) -> Response:
    get_changeable(db, Model, model_pk, caller, WHAT).settings = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{model_pk}/chunking_configuration/", summary="ModelChunkingOptions (defaults when unset)")
def get_chunking(model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    return ChunkingIn(**(model.chunking or {})).model_dump()


@router.post("/{model_pk}/chunking_configuration/", summary="Set ModelChunkingOptions")
def post_chunking(model_pk: int, body: ChunkingIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    model.chunking = body.model_dump()
    return model.chunking


SCALING_DEFAULTS: dict[str, Any] = {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 1,
                                    "worker_count_max": 10, "worker_count_min": 0, "chunks_per_worker": 10}


@router.get("/{model_pk}/scaling_configuration/",
            summary="ModelScalingOptions (stored for compatibility; Airflow pools and executors do the scaling)")
def get_scaling(model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    return {**SCALING_DEFAULTS, **(model.scaling or {})}


def _parse(schema: type[BaseModel], data: Any) -> Any:
    """``data`` through ``schema``; 400 ``{field: [messages]}`` as the reference's serializers answer."""
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"non_field_errors": ["send a JSON object"]})
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "non_field_errors"
            errors.setdefault(field, []).append(err["msg"])
        raise HTTPException(status.HTTP_400_BAD_REQUEST, errors) from None


@router.post("/{model_pk}/scaling_configuration/",
             summary="Set ModelScalingOptions (FIXED_WORKERS, QUEUE_LOAD or DYNAMIC_TASKS; 400 names a bad field)")
def post_scaling(model_pk: int, db: DbDep, caller: CallerDep, data: Annotated[Any, Body()]) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    merged = {**SCALING_DEFAULTS, **(model.scaling or {}), **(data if isinstance(data, dict) else {})}
    body: ScalingIn = _parse(ScalingIn, data if not isinstance(data, dict) else merged)
    errors: dict[str, list[str]] = {}
    if body.worker_count_min > body.worker_count_max:
        field = "worker_count_max" if "worker_count_max" in data and "worker_count_min" not in data \
            else "worker_count_min"
        errors[field] = [f"worker_count_min ({body.worker_count_min}) must not exceed worker_count_max "
                         f"({body.worker_count_max})"]
    if model.run_mode == "V1" and body.scaling_strategy == "DYNAMIC_TASKS":
        errors["scaling_strategy"] = ["a V1 model can only use FIXED_WORKERS or QUEUE_LOAD"]
    if errors:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, errors)
    model.scaling = body.model_dump()
    return model.scaling


@router.get("/{model_pk}/data_files/", summary="The model's data files")
def model_data_files(request: Request, model_pk: int, db: DbDep, caller: CallerDep) -> list[dict[str, Any]]:
    from perilflow.plugins.api.routes.data_files import data_file_json

    model = get_visible(db, Model, model_pk, caller, WHAT)
    return [data_file_json(request, d) for d in model.data_files if may_see_data_file(d, caller)]


def may_see_data_file(d: Any, caller: Caller) -> bool:
    names = {g.name for g in d.groups}
    return caller.admin or not names or bool(names & caller.groups)


@router.post("/{model_pk}/data_files/", summary="Link data files to the model ({\"data_files\": [ids]} replaces "
                                                "the links)")
def link_data_files(request: Request, model_pk: int, body: DataFileLinksIn, db: DbDep, caller: CallerDep
                    ) -> list[dict[str, Any]]:
    from perilflow.plugins.api.routes.data_files import data_file_json

    model = get_changeable(db, Model, model_pk, caller, WHAT)
    model.data_files = _data_files(db, body.data_files, caller)
    db.flush()
    return [data_file_json(request, d) for d in model.data_files]


@router.get("/{model_pk}/storage_links/", summary="Where the model's files are: its data files' object keys and "
                                                  "the runtime folders (relative to the model root)")
def model_storage_links(model_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> dict[str, Any]:
    from perilflow.plugins.api import files

    model = get_visible(db, Model, model_pk, caller, WHAT)
    runtime = model.runtime or {}
    return {"data_files": {str(d.id): files.storage_key(settings, d.file.uri) if d.file else None
                           for d in model.data_files if may_see_data_file(d, caller)},
            **{key: runtime.get(key) for key in ("model_data_dir", "lookup_data_dir", "lookup_config_json",
                                                 "model_settings_json")}}


# ----------------------------------------------------------------------------- settings templates


def template_json(request: Request, model_pk: int, t: SettingsTemplate) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/models/{model_pk}/setting_templates/{t.id}"
    return {"id": t.id, "name": t.name, "description": t.description,
            "file_url": f"{base}/content/" if t.settings is not None else None,
            "created": t.created, "modified": t.modified}


def _template(db: Session, model: Model, template_pk: int) -> SettingsTemplate:
    t = db.get(SettingsTemplate, template_pk)
    if t is None or t.model_id != model.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"settings template {template_pk} of model {model.id} not found")
    return t


def _settings_or_400(data: Any, field: str) -> dict[str, Any]:
    from perilflow.plugins.api.routes.analyses import validate_analysis_settings

    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: ["the analysis settings must be a JSON object"]})
    errors = validate_analysis_settings(data)
    if errors:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [f"{k}: {m}" for k, v in errors.items() for m in v]})
    return data


@router.get("/{model_pk}/setting_templates/", summary="The model's analysis-settings templates")
def list_templates(request: Request, model_pk: int, db: DbDep, caller: CallerDep) -> list[dict[str, Any]]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    return [template_json(request, model.id, t) for t in model.templates]


@router.post("/{model_pk}/setting_templates/", status_code=status.HTTP_201_CREATED,
             summary="Create a template: `file` (analysis settings JSON) or `analysis_id` to copy its settings")
def create_template(request: Request, model_pk: int, body: TemplateIn, db: DbDep, caller: CallerDep
                    ) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    if body.file is not None and body.analysis_id is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analysis_id": ["give either file or analysis_id"]})
    content = _settings_or_400(body.file, "file") if body.file is not None else None
    if body.analysis_id is not None:
        clause = visible(Analysis, caller)
        stmt = select(Analysis).where(Analysis.id == body.analysis_id)
        analysis = db.scalar(stmt if clause is None else stmt.where(clause))
        if analysis is None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                {"analysis_id": [f"analysis {body.analysis_id} not found"]})
        if analysis.settings is None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analysis_id": [
                f"analysis {body.analysis_id} has no settings; POST them to its settings/ first"]})
        content = analysis.settings
    t = SettingsTemplate(model=model, name=body.name, description=body.description, settings=content,
                         creator=caller.name)
    db.add(t)
    db.flush()
    return template_json(request, model.id, t)


@router.get("/{model_pk}/setting_templates/{template_pk}/", summary="One template")
def get_template(request: Request, model_pk: int, template_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    return template_json(request, model.id, _template(db, model, template_pk))


def _update_template(request: Request, model_pk: int, template_pk: int, fields: dict[str, Any], db: Session,
                     caller: Caller) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    t = _template(db, model, template_pk)
    if fields.get("name") is not None:
        t.name = fields["name"]
    if fields.get("description") is not None:
        t.description = fields["description"]
    if fields.get("file") is not None:
        t.settings = _settings_or_400(fields["file"], "file")
    db.flush()
    return template_json(request, model.id, t)


@router.put("/{model_pk}/setting_templates/{template_pk}/", summary="Replace a template's fields")
def put_template(request: Request, model_pk: int, template_pk: int, body: TemplateIn, db: DbDep, caller: CallerDep
                 ) -> dict[str, Any]:
    if body.analysis_id is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"analysis_id": ["only on create; send file instead"]})
    return _update_template(request, model_pk, template_pk, body.model_dump(), db, caller)


@router.patch("/{model_pk}/setting_templates/{template_pk}/", summary="Change some of a template's fields")
def patch_template(request: Request, model_pk: int, template_pk: int, body: TemplatePatch, db: DbDep,
                   caller: CallerDep) -> dict[str, Any]:
    return _update_template(request, model_pk, template_pk, body.model_dump(exclude_unset=True), db, caller)


@router.delete("/{model_pk}/setting_templates/{template_pk}/", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(model_pk: int, template_pk: int, db: DbDep, caller: CallerDep) -> Response:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    db.delete(_template(db, model, template_pk))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{model_pk}/setting_templates/{template_pk}/content/", summary="The template's analysis settings")
def get_template_content(model_pk: int, template_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    model = get_visible(db, Model, model_pk, caller, WHAT)
    t = _template(db, model, template_pk)
    if t.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"settings template {template_pk} has no content")
    return t.settings


@router.post("/{model_pk}/setting_templates/{template_pk}/content/",
             summary="Set the template's analysis settings (ods-tools schema; 400 names fields)")
def post_template_content(model_pk: int, template_pk: int, db: DbDep, caller: CallerDep,
                          data: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    from perilflow.plugins.api.routes.analyses import _raise_for_settings

    model = get_changeable(db, Model, model_pk, caller, WHAT)
    t = _template(db, model, template_pk)
    _raise_for_settings(data)
    t.settings = data
    return data


@router.delete("/{model_pk}/setting_templates/{template_pk}/content/", status_code=status.HTTP_204_NO_CONTENT)
def delete_template_content(model_pk: int, template_pk: int, db: DbDep, caller: CallerDep) -> Response:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    t = _template(db, model, template_pk)
    if t.settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"settings template {template_pk} has no content")
    t.settings = None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{model_pk}/versions/", summary="Versions of the platform and libraries")
def versions(model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    from importlib import metadata

    import perilflow

    get_visible(db, Model, model_pk, caller, WHAT)

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    ods = version("ods-tools")
    return {"ver_ktools": None, "ver_oasislmf": None, "ver_platform": perilflow.__version__, "ver_ods": ods,
            "ver_oed": ods, "ver_perilflow": perilflow.__version__, "ver_airflow": version("apache-airflow"),
            "ver_numpy": version("numpy"), "ver_numba": version("numba")}
