"""Files in object storage: streamed uploads with a size limit, streamed downloads, OED validation."""

from __future__ import annotations

import mimetypes
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import HTTPException, UploadFile, status
from fastapi.responses import StreamingResponse

from perilflow.operators import storage
from perilflow.plugins.settings import ApiSettings

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
    target = storage_path(settings, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.tmp"
    size = 0
    try:
        with tmp.open("wb") as out:
            while piece := upload.file.read(CHUNK):
                size += len(piece)
                if size > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(settings))
                out.write(piece)
        tmp.rename(target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return uri, filename, size


def _too_large(settings: ApiSettings) -> str:
    return (f"the file is larger than the upload limit of {settings.max_upload_mb:g} MiB; "
            "raise PERILFLOW_MAX_UPLOAD_MB or link the file from storage")


def remove(settings: ApiSettings, uri: str | None) -> None:
    if not uri:
        return
    target = storage_path(settings, uri)
    if target.exists():
        target.unlink()


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
