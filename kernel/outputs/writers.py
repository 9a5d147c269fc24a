"""ORD table layouts and their csv / parquet writers.

Each ORD table is a numpy structured dtype whose field names are the ORD column
names, in ORD order, with the column types the reference uses (``int32`` ids,
``float32`` values). :data:`TABLES` maps a table name (``selt``, ``melt``, ...)
to its :class:`TableLayout`.

CSV text is produced the way the reference's csv writer produces it, so files can
be compared byte for byte:

* integers are written in decimal;
* a float column with ``p`` decimals is written from the float32 value widened to
  float64, as ``rint(|v| * 10**p)`` split into an integer and a zero-padded
  fractional part (round half to even on the *scaled* double, which is what the
  reference does instead of printf's exact decimal rounding); negative values and
  ``-0.0`` get a leading ``-``; ``nan`` / ``inf`` / ``-inf`` are spelled that way;
* values too large for that scaled integer (``|v| * 10**p >= 9.2e18``) fall back to
  Python's ``%.pf``, as the reference does.

:func:`format_csv` is the fast path (an njit kernel filling a byte buffer);
:func:`format_csv_python` is the same rules written plainly (used for the rare
overflow fallback and by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import njit

I4 = np.dtype("<i4")
F4 = np.dtype("<f4")

#: Column precision code for integer columns (written with ``%d``).
INT = -1

#: Largest scaled magnitude the fast path writes (the reference's overflow guard).
_OVERFLOW = 9.2e18

#: Rows per parquet row group (the reference writes its buffers of this size).
PARQUET_ROW_GROUP = 1_000_000


@dataclass(frozen=True)
class TableLayout:
    """Column names, numpy types and csv precisions of one ORD table.

    Attributes
    ----------
    name : str
        Table name as used in file names (``selt``, ``palt``, ...).
    columns : tuple of (str, numpy.dtype, int)
        ``(column name, dtype, decimals)``; decimals is :data:`INT` for integers.
    """

    name: str
    columns: tuple[tuple[str, np.dtype, int], ...]

    @property
    def dtype(self) -> np.dtype:
        """The structured (packed) dtype of one row."""
        return np.dtype([(c, t) for c, t, _ in self.columns])

    @property
    def headers(self) -> list[str]:
        """The csv header fields."""
        return [c for c, _, _ in self.columns]

    @property
    def precisions(self) -> np.ndarray:
        """int64[n_columns]: decimals per column (:data:`INT` for integers)."""
        return np.array([p for _, _, p in self.columns], dtype=np.int64)

    def empty(self, n: int = 0) -> np.ndarray:
        """A zeroed structured array of ``n`` rows."""
        return np.zeros(n, dtype=self.dtype)


def _layout(name: str, cols: list[tuple[str, str, int]]) -> TableLayout:
    return TableLayout(name, tuple((c, I4 if t == "i" else F4, p) for c, t, p in cols))


_PLT_KEYS = [
    ("Period", "i", INT),
    ("PeriodWeight", "f", 6),
    ("EventId", "i", INT),
    ("Year", "i", INT),
    ("Month", "i", INT),
    ("Day", "i", INT),
    ("Hour", "i", INT),
    ("Minute", "i", INT),
    ("SummaryId", "i", INT),
]

#: Every ORD table Perilflow writes, by file-name suffix.
TABLES: dict[str, TableLayout] = {
    t.name: t
    for t in [
        _layout(
            "selt",
            [("EventId", "i", INT), ("SummaryId", "i", INT), ("SampleId", "i", INT), ("Loss", "f", 2),
             ("ImpactedExposure", "f", 2)],
        ),
        _layout(
            "melt",
            [("EventId", "i", INT), ("SummaryId", "i", INT), ("SampleType", "i", INT), ("EventRate", "f", 6),
             ("ChanceOfLoss", "f", 6), ("MeanLoss", "f", 6), ("SDLoss", "f", 6), ("MaxLoss", "f", 6),
             ("FootprintExposure", "f", 6), ("MeanImpactedExposure", "f", 6), ("MaxImpactedExposure", "f", 6)],
        ),
        _layout("qelt", [("EventId", "i", INT), ("SummaryId", "i", INT), ("Quantile", "f", 6), ("Loss", "f", 6)]),
        _layout("splt", _PLT_KEYS + [("SampleId", "i", INT), ("Loss", "f", 2), ("ImpactedExposure", "f", 2)]),
        _layout(
            "mplt",
            _PLT_KEYS
            + [("SampleType", "i", INT), ("ChanceOfLoss", "f", 4), ("MeanLoss", "f", 2), ("SDLoss", "f", 2),
               ("MaxLoss", "f", 2), ("FootprintExposure", "f", 2), ("MeanImpactedExposure", "f", 2),
               ("MaxImpactedExposure", "f", 2)],
        ),
        _layout("qplt", _PLT_KEYS + [("Quantile", "f", 2), ("Loss", "f", 2)]),
        _layout("palt", [("SummaryId", "i", INT), ("SampleType", "i", INT), ("MeanLoss", "f", 6), ("SDLoss", "f", 6)]),
        _layout(
            "alct",
            [("SummaryId", "i", INT), ("MeanLoss", "f", 6), ("SDLoss", "f", 6), ("SampleSize", "i", INT),
             ("LowerCI", "f", 6), ("UpperCI", "f", 6), ("StandardError", "f", 6), ("RelativeError", "f", 6),
             ("VarElementHaz", "f", 6), ("StandardErrorHaz", "f", 6), ("RelativeErrorHaz", "f", 6),
             ("VarElementVuln", "f", 6), ("StandardErrorVuln", "f", 6), ("RelativeErrorVuln", "f", 6)],
        ),
        _layout(
            "ept",
            [("SummaryId", "i", INT), ("EPCalc", "i", INT), ("EPType", "i", INT), ("ReturnPeriod", "f", 6),
             ("Loss", "f", 6)],
        ),
        _layout(
            "psept",
            [("SummaryId", "i", INT), ("SampleId", "i", INT), ("EPType", "i", INT), ("ReturnPeriod", "f", 6),
             ("Loss", "f", 6)],
        ),
    ]
}
# The reference writes its "mean only" ALT with the full ALT layout (see aal.py).
TABLES["altmeanonly"] = TableLayout("altmeanonly", TABLES["palt"].columns)


# ---------------------------------------------------------------------------------------------
# csv formatting


@njit(cache=True)
def _write_uint(buf, pos, v):
    """Write the non-negative int64 ``v`` in decimal at ``buf[pos:]``; return the new position."""
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t > 0:
        t //= 10
        n += 1
    end = pos + n
    k = end - 1
    while v > 0:
        buf[k] = 48 + v % 10
        v //= 10
        k -= 1
    return end


@njit(cache=True)
def _format_kernel(values, precisions, buf):
    """Format ``values`` row by row into ``buf`` (ASCII csv, no header).

    Parameters
    ----------
    values : numpy.ndarray
        float64[n_rows, n_cols]: the cell values (integers and float32 values are exact in float64).
    precisions : numpy.ndarray
        int64[n_cols]: decimals per column, ``-1`` for integer columns (``0 <= p <= 8``).
    buf : numpy.ndarray
        uint8[n_bytes]: output buffer, large enough (see :func:`format_csv`).

    Returns
    -------
    int
        Bytes written, or ``-1 - row`` if ``row`` holds a value the fast path cannot write.
    """
    n_rows, n_cols = values.shape
    pos = 0
    for i in range(n_rows):
        for j in range(n_cols):
            if j > 0:
                buf[pos] = 44
                pos += 1
            v = values[i, j]
            p = precisions[j]
            if p < 0:
                iv = np.int64(v)
                if iv < 0:
                    buf[pos] = 45
                    pos += 1
                    iv = -iv
                pos = _write_uint(buf, pos, iv)
                continue
            if np.isnan(v):
                buf[pos] = 110
                buf[pos + 1] = 97
                buf[pos + 2] = 110
                pos += 3
                continue
            if np.isinf(v):
                if v < 0:
                    buf[pos] = 45
                    pos += 1
                buf[pos] = 105
                buf[pos + 1] = 110
                buf[pos + 2] = 102
                pos += 3
                continue
            scale = 1
            for _ in range(p):
                scale *= 10
            if abs(v) * scale >= _OVERFLOW:
                return -1 - i
            neg = np.signbit(v)
            a = -v if neg else v
            ival = np.int64(np.rint(a * scale))
            if neg:
                buf[pos] = 45
                pos += 1
            pos = _write_uint(buf, pos, ival // scale)
            if p > 0:
                buf[pos] = 46
                pos += 1
                frac = ival % scale
                for k in range(p - 1, -1, -1):
                    buf[pos + k] = 48 + frac % 10
                    frac //= 10
                pos += p
        buf[pos] = 10
        pos += 1
    return pos


def _format_value_python(v: float, p: int) -> str:
    """One csv cell by the reference's rules (see the module docstring)."""
    if p < 0:
        return str(int(v))
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    scale = 10**p
    if abs(v) * scale >= _OVERFLOW:
        return f"%.{p}f" % v
    neg = bool(np.signbit(v))
    ival = int(np.rint(abs(v) * float(scale)))
    text = str(ival // scale)
    if p > 0:
        text += "." + str(ival % scale).rjust(p, "0")
    return ("-" if neg else "") + text


def format_csv_python(rows: np.ndarray, layout: TableLayout) -> bytes:
    """Plain-Python twin of :func:`format_csv` (slow; any value size)."""
    lines = []
    for row in rows:
        cells = [_format_value_python(float(row[c]), p) for c, _, p in layout.columns]
        lines.append(",".join(cells) + "\n")
    return "".join(lines).encode("ascii")


def _as_matrix(rows: np.ndarray, layout: TableLayout) -> np.ndarray:
    mat = np.empty((rows.shape[0], len(layout.columns)), dtype=np.float64)
    for j, (c, _, _) in enumerate(layout.columns):
        mat[:, j] = rows[c]
    return mat


def format_csv(rows: np.ndarray, layout: TableLayout) -> bytes:
    """Format structured ``rows`` of ``layout`` as csv lines (no header).

    Parameters
    ----------
    rows : numpy.ndarray
        Structured array with ``layout.dtype`` (any other dtype with the same field names works).
    layout : TableLayout
        The table the rows belong to.

    Returns
    -------
    bytes
        ASCII text, one ``\\n``-terminated line per row (empty for no rows).
    """
    if rows.shape[0] == 0:
        return b""
    mat = _as_matrix(rows, layout)
    prec = layout.precisions
    if np.any(prec > 8):
        raise ValueError(f"table {layout.name}: precisions above 8 decimals are not supported by format_csv")
    width = int(np.sum(np.where(prec < 0, 21, 32))) + len(prec)
    buf = np.empty(mat.shape[0] * width + 16, dtype=np.uint8)
    n = _format_kernel(mat, prec, buf)
    if n < 0:  # a huge value somewhere: format that block in Python
        row = -1 - n
        head = format_csv(rows[:row], layout)
        return head + format_csv_python(rows[row:row + 1], layout) + format_csv(rows[row + 1:], layout)
    return buf[:n].tobytes()


def csv_header(layout: TableLayout) -> bytes:
    """The header line of ``layout`` (ends with a newline)."""
    return (",".join(layout.headers) + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------
# files


def parquet_schema(layout: TableLayout) -> pa.Schema:
    """The arrow schema of ``layout`` (int32 / float32 columns, ORD names)."""
    return pa.schema([(c, pa.from_numpy_dtype(t)) for c, t, _ in layout.columns])


def write_parquet(path: str | Path, rows: np.ndarray, layout: TableLayout) -> None:
    """Write ``rows`` as one parquet file with the table's schema (row groups of 1M rows)."""
    schema = parquet_schema(layout)
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, max(rows.shape[0], 1), PARQUET_ROW_GROUP):
            part = rows[start:start + PARQUET_ROW_GROUP]
            arrays = [pa.array(np.ascontiguousarray(part[c])) for c, _, _ in layout.columns]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def write_table(path: str | Path, rows: np.ndarray, layout: TableLayout, parquet: bool) -> None:
    """Write a whole table to ``path`` as csv (header + rows) or parquet."""
    if parquet:
        write_parquet(path, rows, layout)
        return
    with open(path, "wb") as f:
        f.write(csv_header(layout))
        f.write(format_csv(rows, layout))
