"""``/v2/models/``: CRUD (DELETE is soft), settings, chunking and scaling configuration, versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from sqlalchemy import select

from perilflow.plugins.api.auth import CallerDep, DbDep, api_base, get_changeable, get_visible, resolve_groups, visible
from perilflow.plugins.api.schemas import ChunkingIn, ModelIn, ModelPatch
from perilflow.plugins.db.models import Model

router = APIRouter(prefix="/v2/models", tags=["models"])
WHAT = "model"


def model_json(request: Request, model: Model) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/models/{model.id}"
    return {
        "id": model.id, "supplier_id": model.supplier_id, "model_id": model.model_id, "version_id": model.version_id,
        "created": model.created, "modified": model.modified, "data_files": [],
        "settings": f"{base}/settings/", "versions": f"{base}/versions/",
        "scaling_configuration": f"{base}/scaling_configuration/",
        "chunking_configuration": f"{base}/chunking_configuration/",
        "groups": sorted(g.name for g in model.groups), "run_mode": model.run_mode, "runtime": model.runtime or {},
    }


@router.get("/", summary="List models (filters: supplier_id, model_id, version_id and their __contains)")
def list_models(request: Request, db: DbDep, caller: CallerDep, supplier_id: str | None = None,
                model_id: str | None = None, version_id: str | None = None,
                supplier_id__contains: str | None = None, model_id__contains: str | None = None,
                version_id__contains: str | None = None) -> list[dict[str, Any]]:
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
    return [model_json(request, m) for m in db.scalars(stmt)]


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
    model.runtime = body.runtime
    model.groups = resolve_groups(db, body.groups, caller)
    db.add(model)
    db.flush()
    return model_json(request, model)


@router.get("/{model_pk}/", summary="One model")
def get_model(request: Request, model_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return model_json(request, get_visible(db, Model, model_pk, caller, WHAT))


def _update(request: Request, model_pk: int, body: ModelPatch, db: DbDep, caller: CallerDep,
            partial: bool) -> dict[str, Any]:
    model = get_changeable(db, Model, model_pk, caller, WHAT)
    fields = body.model_dump(exclude_unset=partial)
    for name in ("supplier_id", "model_id", "version_id", "run_mode", "runtime"):
        if name in fields and (fields[name] is not None or name in ("run_mode", "runtime")):
            setattr(model, name, fields[name])
    if "groups" in fields:
        model.groups = resolve_groups(db, fields["groups"], caller)
    db.flush()
    return model_json(request, model)


@router.put("/{model_pk}/", summary="Replace a model's fields")
def put_model(request: Request, model_pk: int, body: ModelIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return _update(request, model_pk, ModelPatch(**body.model_dump()), db, caller, partial=False)


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
    from ods_tools.oed.settings import ModelSettingHandler

    from perilflow.plugins.api.schemas import ods_settings_errors

    return ods_settings_errors(ModelSettingHandler.make(), data)


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
