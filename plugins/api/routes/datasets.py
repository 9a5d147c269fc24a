"""``/v2/datasets/``: sets of files in storage, the inputs and outputs of algorithm tasks.

Create a dataset (JSON), then upload its files (multipart field ``files``, repeatable; each
streamed to ``{storage}/datasets/{id}/files/<name>`` under a temporary name and renamed, with
the upload size limit); list them, download one, or download all as one ``.tar.gz``. A file
uploaded under a name the dataset already has replaces it. Output datasets of algorithm
tasks are created by the API when the task succeeds and point at the task's storage folder.
Groups as the other objects.
"""

from __future__ import annotations

import mimetypes
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from perilflow.operators.storage import safe_name
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
from perilflow.plugins.db.algorithms import AlgorithmTask, Dataset, DatasetFile
from perilflow.plugins.settings import ApiSettings

router = APIRouter(prefix="/v2/datasets", tags=["datasets"])
WHAT = "dataset"


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    groups: list[str] | None = None


class DatasetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    groups: list[str] | None = None


def file_json(base: str, f: DatasetFile) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type, "created": f.created,
            "file": f"{base}/files/{f.id}/"}


def dataset_json(request: Request, d: Dataset) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/datasets/{d.id}"
    return {
        "id": d.id, "name": d.name, "description": d.description, "created": d.created, "modified": d.modified,
        "creator": d.creator, "groups": sorted(g.name for g in d.groups), "file_count": len(d.files),
        "size": d.size, "source_task": d.source_task_id, "files": [file_json(base, f) for f in d.files],
        "download": f"{base}/download/",
    }


def upload_name(raw: str | None) -> str:
    """A relative file name inside a dataset from an upload's name: each part made safe, no ``..``."""
    parts = [p for p in PurePosixPath(str(raw or "").replace("\\", "/")).parts if p not in ("/", ".", "..", "")]
    if not parts:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            {"files": ["a file has no name; send each part with a filename"]})
    return "/".join(safe_name(p) for p in parts)


def store_file(settings: ApiSettings, upload: UploadFile, uri: str) -> int:
    """Stream ``upload`` to ``uri`` under a temporary name, then rename it; 413 past the limit. Returns the size."""
    limit = settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, files._too_large(settings))
    return files.write_stream(settings, upload.file, uri, limit)


def remove_files(db: Session, d: Dataset) -> None:
    """Remove the dataset's files from storage once ``db`` commits (an output dataset's files are its own too)."""
    for f in d.files:
        files.remove_after_commit(db, f.uri)


@router.get("/", summary="List datasets (filters: name, name__contains)")
def list_datasets(request: Request, db: DbDep, caller: CallerDep, name: str | None = None,
                  name__contains: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Dataset).order_by(Dataset.id)
    clause = visible(Dataset, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    if name is not None:
        stmt = stmt.where(Dataset.name == name)
    if name__contains is not None:
        stmt = stmt.where(Dataset.name.contains(name__contains, autoescape=True))
    return [dataset_json(request, d) for d in db.scalars(stmt)]


@router.post("/", status_code=status.HTTP_201_CREATED, summary="Create an empty dataset (then POST its files/)")
def create_dataset(request: Request, body: DatasetIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    d = Dataset(name=body.name, description=body.description, creator=caller.name,
                groups=resolve_groups(db, body.groups, caller))
    db.add(d)
    db.flush()
    return dataset_json(request, d)


@router.get("/{dataset_pk}/", summary="One dataset and its files")
def get_dataset(request: Request, dataset_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return dataset_json(request, get_visible(db, Dataset, dataset_pk, caller, WHAT))


@router.patch("/{dataset_pk}/", summary="Change a dataset's name, description or groups")
def patch_dataset(request: Request, dataset_pk: int, body: DatasetPatch, db: DbDep, caller: CallerDep
                  ) -> dict[str, Any]:
    d = get_changeable(db, Dataset, dataset_pk, caller, WHAT)
    fields = body.model_dump(exclude_unset=True)
    if fields.get("name") is not None:
        d.name = fields["name"]
    if fields.get("description") is not None:
        d.description = fields["description"]
    if "groups" in fields:
        d.groups = resolve_groups(db, fields["groups"], caller)
    db.flush()
    return dataset_json(request, d)


@router.delete("/{dataset_pk}/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a dataset and its files (409 while a queued or running task reads it)")
def delete_dataset(dataset_pk: int, db: DbDep, caller: CallerDep) -> Response:
    d = get_changeable(db, Dataset, dataset_pk, caller, WHAT)
    busy = db.scalar(select(AlgorithmTask.id).where(AlgorithmTask.input_dataset_id == d.id,
                                                    AlgorithmTask.status.in_(("QUEUED", "RUNNING"))))
    if busy is not None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"algorithm task {busy} is using dataset {d.id}; cancel it or wait until it ends")
    remove_files(db, d)
    db.delete(d)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_pk}/files/", summary="The dataset's files")
def list_files(request: Request, dataset_pk: int, db: DbDep, caller: CallerDep) -> list[dict[str, Any]]:
    d = get_visible(db, Dataset, dataset_pk, caller, WHAT)
    base = f"{api_base(request)}/v2/datasets/{d.id}"
    return [file_json(base, f) for f in d.files]


@router.post("/{dataset_pk}/files/", summary="Upload files (multipart field `files`, repeatable; "
                                             "a file name the dataset has already is replaced)")
def upload_files(request: Request, dataset_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep,
                 upload: Annotated[list[UploadFile], File(alias="files")]) -> dict[str, Any]:
    d = get_changeable(db, Dataset, dataset_pk, caller, WHAT)
    if d.source_task_id is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"dataset {d.id} is the output of algorithm task "
                            f"{d.source_task_id} and cannot change; create a new dataset for your files")
    existing = {f.name: f for f in d.files}
    for part in upload:
        name = upload_name(part.filename)
        uri = f"{settings.storage_url}/datasets/{d.id}/files/{name}"
        size = store_file(settings, part, uri)
        if name not in existing:  # a replaced name is overwritten in place: its row names it either way
            files.remove_after_rollback(db, uri)
        media = part.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name in existing:
            existing[name].uri, existing[name].size, existing[name].content_type = uri, size, media
        else:
            existing[name] = DatasetFile(name=name, uri=uri, size=size, content_type=media)
            d.files.append(existing[name])
    d.folder = f"{settings.storage_url}/datasets/{d.id}/files"
    db.flush()
    db.refresh(d)
    return dataset_json(request, d)


def _file(d: Dataset, file_pk: int) -> DatasetFile:
    found = next((f for f in d.files if f.id == file_pk), None)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {d.id} has no file {file_pk}")
    return found


@router.get("/{dataset_pk}/files/{file_pk}/", summary="Download one file", response_model=None)
def download_file(dataset_pk: int, file_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    d = get_visible(db, Dataset, dataset_pk, caller, WHAT)
    f = _file(d, file_pk)
    return files.stream(settings, f.uri, f.name.rsplit("/", 1)[-1], f.content_type, missing=f"file {f.name}")


@router.delete("/{dataset_pk}/files/{file_pk}/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove one file")
def delete_file(dataset_pk: int, file_pk: int, db: DbDep, caller: CallerDep) -> Response:
    d = get_changeable(db, Dataset, dataset_pk, caller, WHAT)
    if d.source_task_id is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"dataset {d.id} is an algorithm task's output and "
                            "cannot change")
    f = _file(d, file_pk)
    files.remove_after_commit(db, f.uri)
    d.files.remove(f)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_pk}/download/", summary="All files as one .tar.gz (names as in the dataset)",
            response_model=None)
def download_all(dataset_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    d = get_visible(db, Dataset, dataset_pk, caller, WHAT)
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - closed by the stream
    try:
        with tarfile.open(fileobj=spool, mode="w:gz", compresslevel=1) as archive:
            for f in d.files:
                source = files.storage_path(settings, f.uri)
                if not source.exists():
                    raise HTTPException(status.HTTP_404_NOT_FOUND, f"file {f.name} is no longer in storage ({f.uri})")
                info = tarfile.TarInfo(f.name)
                info.size = source.stat().st_size
                with source.open("rb") as handle:
                    archive.addfile(info, handle)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            while piece := spool.read(files.CHUNK):
                yield piece
        finally:
            spool.close()

    name = f"dataset-{d.id}-{safe_name(d.name)}.tar.gz"
    return StreamingResponse(body(), media_type="application/gzip",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
