"""Files in object storage: streamed uploads with a size limit, streamed downloads, OED validation."""

from __future__ import annotations

import logging
import mimetypes
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

from fastapi import HTTPException, UploadFile, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from perilflow.operators import storage
from perilflow.plugins.settings import ApiSettings

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def storage_path(settings: ApiSettings, uri: str):  # noqa: ANN201 - ObjectStoragePath (lazy import)
    return storage.path(SimpleNamespace(storage_conn_id=settings.storage_conn_id), uri)  # type: ignore[arg-type]


def store_upload(settings: ApiSettings, upload: UploadFile, folder: str, prefix: str) -> tuple[str, str, int]:
    """Copy ``upload`` to ``{storage_url}/{folder}/{prefix}-{8 hex}-{safe name}`` in 1 MiB pieces.

    Returns (uri, original file name, size). Writes a temporary name, renamed when complete;
    refuses (413) past PERILFLOW_MAX_UPLOAD_MB and removes the partial file.
    """
    filename = Path(upload.filename or "upload").name or "upload"
    # the suffix is kept whole (".csv" alone would become "csv"): validation reads a file by its suffix
    stem, dot, suffix = filename.rpartition(".")
    safe = f"{storage.safe_name(stem)}.{storage.safe_name(suffix)}" if dot else storage.safe_name(filename)
    name = f"{storage.safe_name(prefix)}-{uuid.uuid4().hex[:8]}-{safe}"
    uri = f"{settings.storage_url}/{folder.strip('/')}/{name}"
    limit = settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(settings))
    size = write_stream(settings, upload.file, uri, limit)
    return uri, filename, size


def write_stream(settings: ApiSettings, source: BinaryIO, uri: str, limit: int | None = None) -> int:
    """Copy ``source`` to ``uri`` in 1 MiB pieces under a temporary name, renamed when complete.

    Past ``limit`` bytes it stops with 413 (PERILFLOW_MAX_UPLOAD_MB); on any failure the partial
    file is removed, so storage never holds half a file. Returns the size.
    """
    target = storage_path(settings, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with tmp.open("wb") as out:
            size = copy_limited(settings, source, out, limit)
        tmp.rename(target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return size


def _too_large(settings: ApiSettings) -> str:
    return (f"the file is larger than the upload limit of {settings.max_upload_mb:g} MiB; "
            "raise PERILFLOW_MAX_UPLOAD_MB or link the file from storage")


def remove(settings: ApiSettings, uri: str | None) -> None:
    """Delete a stored file now (if any). Routes use :func:`remove_after_commit` instead."""
    if not uri:
        return
    target = storage_path(settings, uri)
    if target.exists():
        target.unlink()


_PENDING = "perilflow_remove_after_commit"
_NEW = "perilflow_remove_after_rollback"


def remove_after_commit(db: Session, uri: str | None) -> None:
    """Delete the stored file at ``uri`` once ``db``'s transaction commits; keep it if it rolls back.

    A row that stops pointing at a file (a replaced upload, a deleted object) and the file itself
    must go together: removed first, a failed commit would leave a row naming a missing file.
    ``get_db`` calls :func:`run_removals` after its commit.
    """
    if uri:
        db.info.setdefault(_PENDING, []).append(uri)


def remove_after_rollback(db: Session, uri: str | None) -> None:
    """Delete the newly stored file at ``uri`` if ``db``'s transaction rolls back (its row was never saved).

    The other half of :func:`remove_after_commit`: an upload is written before the row that names it
    is committed; if that commit fails, nothing would name the file.
    """
    if uri:
        db.info.setdefault(_NEW, []).append(uri)


def run_removals(db: Session, settings: ApiSettings, committed: bool) -> None:
    """After the transaction: if it committed, delete the files :func:`remove_after_commit` queued; if it
    rolled back, delete the new ones :func:`remove_after_rollback` queued instead."""
    released, new = db.info.pop(_PENDING, []), db.info.pop(_NEW, [])
    for uri in released if committed else new:
        try:
            remove(settings, uri)
        except OSError:  # the row is already gone; a file left behind is logged, not an error for the client
            log.warning("could not remove %s after the transaction", uri, exc_info=True)


def stream(settings: ApiSettings, uri: str | None, filename: str | None = None,
           content_type: str | None = None, missing: str = "file") -> StreamingResponse:
    """A streamed download of ``uri`` (404 naming ``missing`` when there is none)."""
    if not uri:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {missing} for this object")
    source = storage_path(settings, uri)
    if not source.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {missing} is no longer in storage ({uri})")
    name = filename or uri.rstrip("/").rsplit("/", 1)[-1]
    media = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"

    def body() -> Iterator[bytes]:
        with source.open("rb") as handle:
            while piece := handle.read(CHUNK):
                yield piece

    return StreamingResponse(body(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{storage.safe_name(name)}"'})


@contextmanager
def local_copy(settings: ApiSettings, uri: str, filename: str) -> Iterator[Path]:
    """A local path for ``uri``: the file itself for ``file://`` storage, else a temporary copy."""
    if uri.startswith("file://") or "://" not in uri:
        yield Path(uri.removeprefix("file://"))
        return
    with tempfile.TemporaryDirectory(prefix="perilflow-") as tmp:
        local = Path(tmp) / storage.safe_name(filename)
        with storage_path(settings, uri).open("rb") as src, local.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        yield local


def _has_nul(path: Path) -> bool:
    with path.open("rb") as handle:
        while piece := handle.read(CHUNK):
            if b"\x00" in piece:
                return True
    return False


def validate_oed(settings: ApiSettings, files: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Run the kernel's OED checks on ``{kind: (uri, filename)}``; returns every problem as JSON.

    Problems name the file (as uploaded), the 1-based row, the column, what is wrong and the fix.
    """
    from contextlib import ExitStack

    import pandas as pd

    from perilflow.kernel.oed import read_raw, validate_exposure
    from perilflow.kernel.oed.exposure import oed_schema

    with ExitStack() as stack:
        frames = {}
        for kind, (uri, filename) in files.items():
            local = stack.enter_context(local_copy(settings, uri, filename))
            if not local.name.lower().endswith((".parquet", ".pq")) and _has_nul(local):
                # UTF-16/32 text of ASCII is valid UTF-8 with NULs in between: say so rather than "column missing"
                return [{"file": filename, "row": None, "column": None, "fatal": True,
                         "message": f"{filename} holds NUL bytes: it is not UTF-8 text (UTF-16 or UTF-32, or binary)",
                         "fix": "save it as UTF-8 CSV"}]
            try:
                frame, _ = read_raw(local)
            except ValueError as exc:
                return [{"file": filename, "row": None, "column": None, "fatal": True,
                         "message": str(exc).replace(str(local), filename), "fix": "upload a readable CSV or parquet"}]
            if frame is not None and not isinstance(frame.index, pd.RangeIndex):
                # pandas takes the first column as an index when data rows have more cells than the header
                return [{"file": filename, "row": None, "column": None, "fatal": True,
                         "message": f"{filename}: data rows have more cells than the header line",
                         "fix": "give every row as many comma-separated cells as the header (quote cells with commas)"}]
            frames[kind] = (frame, filename)
        problems = validate_exposure(frames, oed_schema())
    return [{"file": p.file, "row": p.row, "column": p.column, "message": p.message, "fix": p.fix,
             "fatal": p.fatal} for p in problems]


def storage_key(settings: ApiSettings, uri: str | None) -> str | None:
    """``uri`` relative to the storage base (the reference's "object key"), or the whole URI outside it."""
    if not uri:
        return None
    base = settings.storage_url.rstrip("/") + "/"
    return uri[len(base):] if uri.startswith(base) else uri


def copy_limited(settings: ApiSettings, source: BinaryIO, target: BinaryIO, limit: int | None) -> int:
    """Copy ``source`` to an open file in 1 MiB pieces; 413 past ``limit`` bytes (None: no limit).
    Returns the size."""
    size = 0
    while piece := source.read(CHUNK):
        size += len(piece)
        if limit is not None and size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(settings))
        target.write(piece)
    return size


def read_small_upload(settings: ApiSettings, upload: UploadFile) -> bytes:
    """The bytes of an upload read into memory (413 above the upload limit)."""
    data = upload.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(settings))
    return data


def read_json_upload(settings: ApiSettings, upload: UploadFile, field: str = "file") -> dict[str, Any]:
    """A JSON object from a small upload (the upload limit applies); 400 naming ``field`` otherwise."""
    import json

    data = read_small_upload(settings, upload)
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
            f"{upload.filename!r} is not a UTF-8 JSON file ({exc}); upload the settings as JSON"]}) from None
    if not isinstance(value, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
            f"{upload.filename!r} holds a JSON {type(value).__name__}; the settings must be a JSON object"]})
    return value


def resolve_key(settings: ApiSettings, key: Any, field: str) -> str:
    """The URI of an object ``key`` under the storage base, checked: a relative path without ``..``
    that exists (400 naming ``field`` otherwise)."""
    from pathlib import PurePosixPath

    if not isinstance(key, str) or not key.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
            "give the object key (a path relative to the storage base) as a non-empty string"]})
    key = key.strip()
    parts = PurePosixPath(key).parts
    if "://" in key or key.startswith("/") or ".." in parts or "\\" in key:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [
            f"{key!r} must be a relative key inside the storage base (no scheme, leading '/' or '..')"]})
    uri = f"{settings.storage_url.rstrip('/')}/{key}"
    target = storage_path(settings, uri)
    if not target.exists() or target.is_dir():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [f"file {key!r} not found in storage"]})
    return uri


def copy_in_storage(settings: ApiSettings, source_uri: str, folder: str, prefix: str) -> tuple[str, str, int]:
    """Copy a stored object to ``{storage}/{folder}/{prefix}-{8 hex}-{name}`` (temporary name, then rename).

    Returns (uri, original name, size). No upload limit: linking is how large files come in.
    """
    source = storage_path(settings, source_uri)
    filename = source_uri.rstrip("/").rsplit("/", 1)[-1]
    name = f"{storage.safe_name(prefix)}-{uuid.uuid4().hex[:8]}-{storage.safe_name(filename)}"
    uri = f"{settings.storage_url}/{folder.strip('/')}/{name}"
    with source.open("rb") as src:
        size = write_stream(settings, src, uri)
    return uri, filename, size


def is_parquet(name: str) -> bool:
    return name.lower().endswith((".parquet", ".pq"))


def stream_converted(settings: ApiSettings, uri: str, filename: str, file_format: str) -> Response:
    """A stored OED file converted to ``csv`` or ``parquet`` (through a temporary file, then streamed)."""
    import os

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from starlette.background import BackgroundTask

    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    fd, tmp_name = tempfile.mkstemp(prefix="perilflow-convert-", suffix=f".{file_format}")
    os.close(fd)
    try:
        with local_copy(settings, uri, filename) as local:
            if file_format == "parquet":
                table = pacsv.read_csv(local, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
                pq.write_table(table, tmp_name)
            else:
                pacsv.write_csv(pq.read_table(local), tmp_name)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        Path(tmp_name).unlink(missing_ok=True)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"file_format": [
            f"{filename} could not be converted to {file_format} ({type(exc).__name__}: {exc}); "
            "download it as stored (no file_format)"]}) from None
    name = f"{stem}.{file_format}"
    media = "text/csv" if file_format == "csv" else "application/octet-stream"

    def body() -> Iterator[bytes]:
        with open(tmp_name, "rb") as handle:
            while piece := handle.read(CHUNK):
                yield piece

    return StreamingResponse(body(), media_type=media, background=BackgroundTask(Path(tmp_name).unlink,
                                                                                 missing_ok=True),
                             headers={"Content-Disposition": f'attachment; filename="{storage.safe_name(name)}"'})
