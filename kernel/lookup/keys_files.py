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

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.lookup.common import LookupDataError
from perilflow.kernel.oasis.files import atomic_write

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


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _plain_columns(frame: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """The columns when pandas would write every cell as is (integers, and text that needs no quotes), else None."""
    if len(frame) == 0 or frame.columns.duplicated().any():
        return None
    columns = {}
    for name in frame.columns:
        if not isinstance(name, str) or not name or _NEEDS_QUOTES.search(name):
            return None
        values = frame[name].to_numpy()
        if values.dtype.kind == "i":
            columns[name] = values
        elif values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
            if any(not text or _NEEDS_QUOTES.search(text) for text in pd.unique(values)):
                return None
            columns[name] = values
        else:
            return None
    return columns


def _write_csv(handle, frame: pd.DataFrame) -> None:
    """``frame.to_csv(handle, index=False, lineterminator="\\n")``; frames of integers and plain text go
    through Arrow's csv writer (same text, several times faster)."""
    columns = _plain_columns(frame)
    if columns is None:
        frame.to_csv(handle, index=False, lineterminator="\n")
        return
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    buffer = io.BytesIO()
    pa_csv.write_csv(pa.table(columns), buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    frame.iloc[:0].to_csv(handle, index=False, lineterminator="\n")  # the header line, as pandas writes it
    handle.write(buffer.getvalue().decode("utf-8"))


def _atomic_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Write ``frame`` as csv through a temporary file beside ``path`` (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: _write_csv(handle, frame), binary=False)


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
