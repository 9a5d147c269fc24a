"""Shared storage as a model worker sees it: local paths, ``file://`` and ``s3://`` URIs.

A worker step reads its inputs from, and writes its outputs to, the URIs in its params
(the worker contract in ARCHITECTURE.md). This module is the only place that touches
them, through fsspec (no Airflow: a worker image carries no Airflow). S3 credentials and
the endpoint come from the usual environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``), which is what a worker pod is given.

Two guarantees:

* **nothing half-written**: every upload goes to a temporary name beside its target and is
  renamed at the end, so a reader sees the whole file or no file;
* **safe archives**: :func:`extract_tar` refuses members with absolute paths, ``..``,
  links or devices before it writes anything.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tarfile
import tempfile
import uuid
import zlib
from pathlib import Path, PurePosixPath

from perilflow.kernel.oasis.files import atomic_write

__all__ = ["TAR_READ_ERRORS", "StorageError", "exists", "extract_tar", "fetch", "fetch_tar", "is_remote", "join", "put",
           "put_bytes", "put_tar", "read_bytes", "remove", "safe_tar_members"]


class StorageError(ValueError):
    """A storage URI that cannot be read or written, or an unsafe archive."""


#: what reading a broken archive raises besides tarfile.TarError: truncated streams (EOFError), bad
#: gzip/bzip2 data (OSError), corrupt deflate/xz data
TAR_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def is_remote(uri: str | os.PathLike) -> bool:
    """True for URIs with a scheme other than ``file://`` (they go through fsspec)."""
    text = str(uri)
    return "://" in text and not text.startswith("file://")


def _local(uri: str | os.PathLike) -> Path:
    text = str(uri)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def _fs(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base`` / parts, keeping the URI scheme (``s3://b/p`` + ``x`` -> ``s3://b/p/x``)."""
    text = str(base).rstrip("/")
    for part in parts:
        text = f"{text}/{str(part).strip('/')}"
    return text


def exists(uri: str | os.PathLike) -> bool:
    if not is_remote(uri):
        return _local(uri).exists()
    fs, path = _fs(str(uri))
    return fs.exists(path)


def fetch(uri: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy the file at ``uri`` to the local path ``target``; returns ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_remote(uri):
        source = _local(uri)
        if not source.is_file():
            raise StorageError(f"{uri}: no such file in storage; check the path (was the upstream step run?)")
        shutil.copyfile(source, target)
        return target
    fs, path = _fs(str(uri))
    try:
        fs.get_file(path, str(target))
    except FileNotFoundError:
        raise StorageError(f"{uri}: no such object in storage; check the path (was the upstream step run?)") from None
    return target


def read_bytes(uri: str | os.PathLike) -> bytes:
    if not is_remote(uri):
        return _local(uri).read_bytes()
    fs, path = _fs(str(uri))
    return fs.cat_file(path)


def put(source: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Upload the local file ``source`` to ``uri`` under a temporary name, then rename it into place."""
    source = Path(source)
    if not is_remote(uri):
        target = _local(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as data:
            atomic_write(target, lambda handle: shutil.copyfileobj(data, handle), binary=True)
        return str(uri)
    fs, path = _fs(str(uri))
    parent, name = path.rsplit("/", 1)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        fs.put_file(str(source), tmp)
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):  # only on failure: a successful move leaves nothing to look for
            fs.rm(tmp)
        raise
    return str(uri)


def put_bytes(data: bytes, uri: str | os.PathLike) -> str:
    with tempfile.TemporaryDirectory(prefix="perilflow-put-") as tmp:
        path = Path(tmp) / "data"
        path.write_bytes(data)
        return put(path, uri)


def remove(uri: str | os.PathLike) -> None:
    """Remove a file or a folder (recursively) if it exists."""
    if not is_remote(uri):
        path = _local(uri)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return
    fs, path = _fs(str(uri))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def safe_tar_members(archive: tarfile.TarFile, name: str, max_bytes: int | None = None) -> list[tarfile.TarInfo]:
    """The members of ``archive``, refusing any that could write outside the target folder.

    ``max_bytes`` caps the unpacked size (the members' sizes added up): an archive past it (a
    "zip bomb") is refused when the header that crosses the cap is read, before that member's
    data is decompressed.
    """
    members: list[tarfile.TarInfo] = []
    total = 0
    while (member := archive.next()) is not None:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise StorageError(f"{name}: member {member.name!r} has an absolute path or '..'; "
                               "build the archive with relative paths inside one folder")
        if not (member.isfile() or member.isdir()):
            raise StorageError(f"{name}: member {member.name!r} is a link or special file; "
                               "archives may hold only regular files and folders")
        total += member.size
        if max_bytes is not None and total > max_bytes:
            raise StorageError(f"{name}: unpacked, the archive is larger than the limit of {max_bytes} bytes "
                               f"(at member {member.name!r}); it is not read further")
        members.append(member)
    return members


def extract_tar(archive_path: str | os.PathLike, target: str | os.PathLike, max_bytes: int | None = None) -> Path:
    """Extract a (gzipped) tar into ``target`` after checking every member (and the size cap, if given)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            members = safe_tar_members(archive, str(archive_path), max_bytes)
            archive.extractall(target, members=members, filter="data")
    except TAR_READ_ERRORS as exc:
        raise StorageError(f"{archive_path}: not a readable tar archive ({exc}); upload a .tar or .tar.gz") from None
    return target


def fetch_tar(uri: str | os.PathLike, target: str | os.PathLike, scratch: str | os.PathLike | None = None) -> Path:
    """Download the tarball at ``uri`` and extract it into ``target``."""
    with tempfile.TemporaryDirectory(prefix="perilflow-tar-", dir=scratch) as tmp:
        local = fetch(uri, Path(tmp) / "archive.tar.gz")
        return extract_tar(local, target)


def put_tar(folder: str | os.PathLike, uri: str | os.PathLike, scratch: str | os.PathLike | None = None) -> str:
    """Pack the contents of ``folder`` (relative names, sorted) into a .tar.gz at ``uri``."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="perilflow-tar-", dir=scratch) as tmp:
        local = Path(tmp) / "archive.tar.gz"
        with tarfile.open(local, "w:gz", compresslevel=1) as archive:
            for path in sorted(folder.rglob("*")):
                archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
        return put(local, uri)
