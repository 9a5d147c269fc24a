"""Worker-side storage: local paths, file:// and s3:// (a moto server on loopback); safe archives."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from perilflow.kernel import storage


@pytest.fixture
def s3_env(moto_s3, monkeypatch):
    import fsspec

    for key, value in moto_s3.items():
        monkeypatch.setenv(key, value)
    fsspec.filesystem("s3").clear_instance_cache()
    fsspec.config.conf.pop("s3", None)
    return "s3://perilflow/tests"


@pytest.fixture(params=["path", "file-uri"])
def local_base(request, tmp_path) -> str:
    return str(tmp_path / "store") if request.param == "path" else f"file://{tmp_path / 'store'}"


def _roundtrip(base: str, tmp_path: Path) -> None:
    source = tmp_path / "src.txt"
    source.write_text("loss,1\n")
    uri = storage.join(base, "analysis-1_files-abc", "keys.csv")
    storage.put(source, uri)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b"loss,1\n"
    assert storage.fetch(uri, tmp_path / "back.txt").read_text() == "loss,1\n"
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("a")
    (folder / "sub" / "b.csv").write_text("b")
    archive = storage.join(base, "analysis-1_files-abc", "lookup-0.tar.gz")
    storage.put_tar(folder, archive)
    out = storage.fetch_tar(archive, tmp_path / "out")
    assert (out / "a.csv").read_text() == "a" and (out / "sub" / "b.csv").read_text() == "b"
    storage.remove(storage.join(base, "analysis-1_files-abc"))
    assert not storage.exists(uri)


def test_local_storage_roundtrip(local_base, tmp_path) -> None:
    _roundtrip(local_base, tmp_path)


def test_s3_storage_roundtrip(s3_env, tmp_path) -> None:
    _roundtrip(s3_env, tmp_path)


def test_missing_objects_are_named(local_base, s3_env, tmp_path) -> None:
    for base in (local_base, s3_env):
        with pytest.raises(storage.StorageError, match="no such"):
            storage.fetch(storage.join(base, "nothing.csv"), tmp_path / "x")


def test_uploads_leave_no_temporary_objects(s3_env, tmp_path) -> None:
    import fsspec

    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 100_000)
    storage.put(source, storage.join(s3_env, "up", "big.bin"))
    fs = fsspec.filesystem("s3")
    assert [p.rsplit("/", 1)[-1] for p in fs.ls("perilflow/tests/up")] == ["big.bin"]


def _tar_with(tmp_path: Path, add) -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        add(archive)
    return path


def _file(archive: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(("name", "add", "message"), [
    ("absolute", lambda a: _file(a, "/etc/evil"), "absolute path or '..'"),
    ("dotdot", lambda a: _file(a, "../evil"), "absolute path or '..'"),
    ("symlink", lambda a: a.addfile(_link("link", "/etc/passwd")), "link or special file"),
])
def test_unsafe_archives_are_refused_before_anything_is_written(name, add, message, tmp_path) -> None:
    target = tmp_path / "target"
    with pytest.raises(storage.StorageError, match=message):
        storage.extract_tar(_tar_with(tmp_path, add), target)
    assert not any(target.iterdir())


def _link(name: str, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = to
    return info


def test_a_file_that_is_not_an_archive_is_named(tmp_path) -> None:
    path = tmp_path / "x.tar.gz"
    path.write_text("not a tar")
    with pytest.raises(storage.StorageError, match="not a readable tar archive"):
        storage.extract_tar(path, tmp_path / "out")
