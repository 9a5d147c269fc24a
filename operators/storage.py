"""Shared storage on the Airflow side, through Airflow's ObjectStoragePath.

One base URL (``PERILFLOW_STORAGE_URL``): ``file:///...`` by default, ``s3://bucket/prefix``
with the Airflow connection ``PERILFLOW_STORAGE_CONN_ID``. A run's files live in folders
named as OasisPlatform names them::

    analysis-{id}_files-{run_uuid}/    exposure/, lookup-{n}.tar.gz, keys.csv, keys-errors.csv,
                                       input.tar.gz, errors/, logs/, traceback.txt
    analysis-{id}_losses-{run_uuid}/   analysis_settings.json, run_directory.tar.gz,
                                       work-{n}.tar.gz, output.tar.gz, errors/, logs/, traceback.txt
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from perilflow.operators.config import PlatformConfig

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in a storage key (no ``/``, no ``..``)."""
    cleaned = _SAFE.sub("-", str(text)).strip(".-")
    return cleaned or "x"


def run_uuid_for(dag_id: str, run_id: str) -> str:
    """A stable 16-hex-digit id for a DAG run (the storage folders' suffix)."""
    return hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:16]


def folder_uri(cfg: PlatformConfig, analysis_id: int, kind: str, run_uuid: str) -> str:
    """URI of a run's folder: kind ``files`` (input generation) or ``losses``."""
    if kind not in ("files", "losses"):
        raise ValueError(f"folder kind {kind!r}; use 'files' or 'losses'")
    return f"{cfg.storage_url}/analysis-{int(analysis_id)}_{kind}-{safe_name(run_uuid)}"


def path(cfg: PlatformConfig, uri: str) -> ObjectStoragePath:
    """An ObjectStoragePath for ``uri`` (plain paths are taken as local files)."""
    from airflow.sdk import ObjectStoragePath

    if "://" not in uri:
        uri = f"file://{uri}"
    if uri.startswith("s3://"):
        return ObjectStoragePath(uri, conn_id=cfg.storage_conn_id)
    return ObjectStoragePath(uri)


def remove(cfg: PlatformConfig, uri: str) -> bool:
    """Remove a file or folder; True when something was removed."""
    target = path(cfg, uri)
    if not target.exists():
        return False
    if target.is_dir():
        target.rmdir(recursive=True)
    else:
        target.unlink()
    return True


def write_text(cfg: PlatformConfig, uri: str, text: str) -> str:
    """Write ``text`` to ``uri`` through a temporary name and a rename."""
    target = path(cfg, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp"
    tmp.write_text(text)
    tmp.rename(target)
    return uri


def read_text(cfg: PlatformConfig, uri: str) -> str:
    return path(cfg, uri).read_text()


def listdir(cfg: PlatformConfig, uri: str) -> list[str]:
    """Names in the folder ``uri`` (empty when it does not exist)."""
    folder = path(cfg, uri)
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir())


def count_location_rows(cfg: PlatformConfig, uri: str) -> int:
    """Rows of an OED location file (csv or parquet) without loading it."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    source = path(cfg, uri)
    if not source.exists():
        raise ValueError(f"portfolio.location: {uri} does not exist; upload the location file first")
    with source.open("rb") as handle:
        if str(uri).lower().endswith(".parquet"):
            return pq.ParquetFile(handle).metadata.num_rows
        rows = 0
        convert = pacsv.ConvertOptions(column_types={}, include_columns=[])
        try:
            reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                    convert_options=convert)
            for batch in reader:
                rows += batch.num_rows
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad CSV
            raise ValueError(f"portfolio.location: {uri} is not a readable CSV file ({exc}); "
                             "upload a UTF-8 CSV or parquet file") from None
        return rows
