"""``/v2/data_files/``: "complex model" data files (CRUD) and their ``content/`` (upload, download, delete).

Groups as the other objects: a user sees ungrouped data files and those of their groups.
Uploads are streamed to ``{storage}/data_files/{id}/`` with the size limit of every upload.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from perilflow.plugins.api import files
from perilflow.plugins.api.auth import (
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
from perilflow.plugins.db.models import DataFile, StoredFile

router = APIRouter(prefix="/v2/data_files", tags=["data_files"])
WHAT = "data file"


class DataFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_description: str = Field(min_length=1, max_length=255)
    file_category: str | None = Field(default=None, max_length=255)
    groups: list[str] | None = None


class DataFilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_description: str | None = Field(default=None, min_length=1, max_length=255)
    file_category: str | None = Field(default=None, max_length=255)
    groups: list[str] | None = None


def data_file_json(request: Request, d: DataFile) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/data_files/{d.id}"
    return {
        "id": d.id, "file_description": d.file_description, "file_category": d.file_category,
        "created": d.created, "modified": d.modified, "groups": sorted(g.name for g in d.groups),
        "file": f"{base}/content/" if d.file else None, "filename": d.file.filename if d.file else None,
        "stored": d.file.uri.rsplit("/", 1)[-1] if d.file else None,
        "content_type": d.file.content_type if d.file else None,
    }


@router.get("/", summary="List data files (filters: file_description, file_category and __contains; "
                         "limit/offset pagination when limit is given)", response_model=None)
def list_data_files(request: Request, db: DbDep, caller: CallerDep, file_description: str | None = None,
                    file_description__contains: str | None = None, file_category: str | None = None,
                    file_category__contains: str | None = None, limit: LimitQuery = None, offset: OffsetQuery = 0
                    ) -> list[dict[str, Any]] | dict[str, Any]:
    stmt = select(DataFile).order_by(DataFile.id)
    clause = visible(DataFile, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    for column, exact, part in ((DataFile.file_description, file_description, file_description__contains),
                                (DataFile.file_category, file_category, file_category__contains)):
        if exact is not None:
            stmt = stmt.where(column == exact)
        if part is not None:
            stmt = stmt.where(column.contains(part, autoescape=True))
    return paginate(request, db, stmt, limit, offset, lambda d: data_file_json(request, d))


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create a data file (then POST its content/)")
def create_data_file(request: Request, body: DataFileIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    d = DataFile(file_description=body.file_description, file_category=body.file_category, creator=caller.name,
                 groups=resolve_groups(db, body.groups, caller))
    db.add(d)
    db.flush()
    return data_file_json(request, d)


@router.get("/{data_file_pk}/", summary="One data file")
def get_data_file(request: Request, data_file_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return data_file_json(request, get_visible(db, DataFile, data_file_pk, caller, WHAT))


def _update(request: Request, data_file_pk: int, fields: dict[str, Any], db: DbDep, caller: CallerDep
            ) -> dict[str, Any]:
    d = get_changeable(db, DataFile, data_file_pk, caller, WHAT)
    if fields.get("file_description") is not None:
        d.file_description = fields["file_description"]
    if "file_category" in fields:
        d.file_category = fields["file_category"]
    if "groups" in fields:
        d.groups = resolve_groups(db, fields["groups"], caller)
    db.flush()
    return data_file_json(request, d)


@router.put("/{data_file_pk}/", summary="Replace a data file's fields")
def put_data_file(request: Request, data_file_pk: int, body: DataFileIn, db: DbDep, caller: CallerDep
                  ) -> dict[str, Any]:
    # a PUT without groups keeps the object's own (as the reference, DRF): they became the caller's, so an
    # admin's PUT made the object visible to everyone
    keep = set() if "groups" in body.model_fields_set else {"groups"}
    return _update(request, data_file_pk, body.model_dump(exclude=keep), db, caller)


@router.patch("/{data_file_pk}/", summary="Change some of a data file's fields")
def patch_data_file(request: Request, data_file_pk: int, body: DataFilePatch, db: DbDep, caller: CallerDep
                    ) -> dict[str, Any]:
    return _update(request, data_file_pk, body.model_dump(exclude_unset=True), db, caller)


@router.delete("/{data_file_pk}/", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a data file and its content")
def delete_data_file(data_file_pk: int, db: DbDep, caller: CallerDep) -> Response:
    d = get_changeable(db, DataFile, data_file_pk, caller, WHAT)
    stored = d.file
    db.delete(d)
    if stored is not None:
        files.remove_after_commit(db, stored.uri)
        db.delete(stored)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{data_file_pk}/content/", summary="Download the data file's content", response_model=None)
def get_content(data_file_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    d = get_visible(db, DataFile, data_file_pk, caller, WHAT)
    if d.file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"data file {data_file_pk} has no content; POST it first")
    return files.stream(settings, d.file.uri, d.file.filename, d.file.content_type, missing="content")


@router.post("/{data_file_pk}/content/", summary="Upload the content (multipart field `file`; replaces any)")
def post_content(request: Request, data_file_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
                 settings: SettingsDep) -> dict[str, Any]:
    d = get_changeable(db, DataFile, data_file_pk, caller, WHAT)
    uri, filename, size = files.store_upload(settings, file, f"data_files/{d.id}", "content")
    files.remove_after_rollback(db, uri)
    old = d.file
    d.file = StoredFile(uri=uri, filename=filename, size=size, creator=caller.name,
                        content_type=file.content_type or "application/octet-stream")
    if old is not None:
        files.remove_after_commit(db, old.uri)
        db.delete(old)
    db.flush()
    return data_file_json(request, d)


@router.delete("/{data_file_pk}/content/", status_code=status.HTTP_204_NO_CONTENT, summary="Delete the content")
def delete_content(data_file_pk: int, db: DbDep, caller: CallerDep) -> Response:
    d = get_changeable(db, DataFile, data_file_pk, caller, WHAT)
    if d.file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"data file {data_file_pk} has no content")
    stored, d.file = d.file, None
    files.remove_after_commit(db, stored.uri)
    db.delete(stored)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
