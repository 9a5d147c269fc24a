"""The reference's keys files: ``keys.csv`` and ``keys-errors.csv``.

``keys.csv`` (one row per successful key)::

    LocID,PerilID,CoverageTypeID,AreaPerilID,VulnerabilityID[,AmplificationID]

``AmplificationID`` is written when the keys have an ``amplification_id``
column. ``keys-errors.csv`` (one row per key that failed or is not modelled)::

    LocID,PerilID,CoverageTypeID,Status,Message

Both are written as pandas writes them in the reference (``to_csv``, no
index, ``\\n`` line ends, fields quoted only when needed, missing values as
empty fields). Writers go through a temporary file in the target folder and
:func:`os.replace`, so a failed write never leaves a partial file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from perilflow.kernel.lookup.common import LookupDataError

__all__ = [
    "KEYS_ERRORS_HEADER",
    "KEYS_HEADER",
    "read_keys",
    "read_keys_errors",
    "write_keys",
    "write_keys_errors",
]

#: keys.csv columns by keys frame column.
KEYS_HEADER = {
    "loc_id": "LocID",
    "peril_id": "PerilID",
    "coverage_type": "CoverageTypeID",
    "area_peril_id": "AreaPerilID",
    "vulnerability_id": "VulnerabilityID",
    "amplification_id": "AmplificationID",
}

#: keys-errors.csv columns by errors frame column.
KEYS_ERRORS_HEADER = {
    "loc_id": "LocID",
    "peril_id": "PerilID",
    "coverage_type": "CoverageTypeID",
    "status": "Status",
    "message": "Message",
}


def _atomic_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Write ``frame`` as csv to a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False, lineterminator="\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _select(frame: pd.DataFrame, header: dict[str, str], optional: tuple[str, ...], what: str) -> pd.DataFrame:
    """Columns of ``frame`` renamed to the file header; integer ids kept as integers."""
    wanted = [c for c in header if c not in optional or c in frame.columns]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise LookupDataError(
            f"the {what} frame has no column(s) {missing}",
            fix=f"give the columns {wanted} (as run_lookup returns them)",
        )
    out = frame[wanted].copy()
    for column in wanted:
        if column in ("loc_id", "coverage_type", "area_peril_id", "vulnerability_id", "amplification_id"):
            if pd.api.types.is_float_dtype(out[column].dtype) or out[column].dtype == object:
                out[column] = pd.to_numeric(out[column]).astype("Int64")
    return out.rename(columns=header)


def write_keys(path: str | os.PathLike[str], keys: pd.DataFrame) -> Path:
    """Write ``keys.csv``.

    Parameters
    ----------
    path : path
        Target file.
    keys : pandas.DataFrame
        ``loc_id, peril_id, coverage_type, area_peril_id, vulnerability_id``
        and optionally ``amplification_id`` (written as ``AmplificationID``).

    Returns
    -------
    Path
        ``path``.
    """
    return _atomic_csv(path, _select(keys, KEYS_HEADER, ("amplification_id",), "keys"))


def write_keys_errors(path: str | os.PathLike[str], errors: pd.DataFrame) -> Path:
    """Write ``keys-errors.csv``.

    Parameters
    ----------
    path : path
        Target file.
    errors : pandas.DataFrame
        ``loc_id, peril_id, coverage_type, status, message``.

    Returns
    -------
    Path
        ``path``.
    """
    return _atomic_csv(path, _select(errors, KEYS_ERRORS_HEADER, (), "keys errors"))


def read_keys(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``keys.csv`` back into a keys frame (columns as :func:`write_keys` takes them).

    Raises
    ------
    LookupDataError
        If a required column is missing.
    """
    frame = pd.read_csv(path, dtype={"PerilID": str})
    return _rename_back(frame, KEYS_HEADER, ("AmplificationID",), path)


def read_keys_errors(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``keys-errors.csv`` back into an errors frame."""
    frame = pd.read_csv(path, dtype={"PerilID": str, "Status": str, "Message": str}, keep_default_na=False,
                        na_values={"LocID": [""], "PerilID": [""], "CoverageTypeID": [""]})
    return _rename_back(frame, KEYS_ERRORS_HEADER, (), path)


def _rename_back(frame: pd.DataFrame, header: dict[str, str], optional: tuple[str, ...], path) -> pd.DataFrame:
    wanted = [name for name in header.values() if name not in optional or name in frame.columns]
    missing = [name for name in wanted if name not in frame.columns]
    if missing:
        raise LookupDataError(f"no column(s) {missing}", source=path, fix=f"the header must be {','.join(wanted)}")
    return frame[wanted].rename(columns={v: k for k, v in header.items()})
