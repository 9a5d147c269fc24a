"""Read and check the Oasis model data files (a model's ``static/`` folder).

Files, formats (first found wins) and what is checked (layouts in
:mod:`perilflow.kernel.model.dtypes`):

* **footprint** -- ``footprint.parquet/`` (partitioned by ``event_id=``) with
  ``footprint_parquet_meta.json``, else ``footprint.bin.z`` + ``footprint.idx.z``, else
  ``footprint.bin`` + ``footprint.idx``, else ``footprint.csv``. The index must point inside
  the file; when an event is read: rows sorted by areaperil, no intensity bin repeated within an
  areaperil, intensity bins in 1..num_intensity_bins, each areaperil's probabilities summing to 1.
* **vulnerability** -- ``vulnerability_dataset.parquet/`` with ``vulnerability_parquet_meta.json``,
  else ``vulnerability.bin`` (with ``vulnerability.idx`` when present), else
  ``vulnerability.bin.z`` + ``vulnerability.idx.z``, else ``vulnerability.csv``. Damage bins in
  1..num_damage_bins, intensity bins >= 1, each (vulnerability, intensity bin) summing to 1,
  every requested vulnerability id present.
* **damage_bin_dict** (``.bin`` > ``.csv``) -- bin_index 1..N in order,
  bin_from <= interpolation <= bin_to, damage_type 0-3.
* **events_<set>** (``.bin`` > ``.csv``) -- any int32 list.
* **occurrence_<id>** (``.bin`` > ``.csv``) -- period_no in 1..no_of_periods.
* **periods** (``.bin`` > ``.csv``; absent: every period weighs 1/P) -- covers 1..P exactly.
* **returnperiods** (``.bin`` > ``.csv``) -- unique and descending.
* **quantile** (``.bin`` > ``.csv``) -- in [0, 1].
* **event_rates.csv** -- none.

"Sum to 1" means within 1e-6 (the tolerance of the reference's csv-to-bin converters).
Binary files are memory-mapped (``numpy.memmap``, read-only) where the layout allows; csv,
compressed and parquet files are read into memory. The vulnerability data becomes the dense
float32 array ``[vulnerability, damage_bin - 1, intensity_bin - 1]``, restricted to the
vulnerabilities asked for and to the footprint's intensity bins (as the reference does).

Event set and occurrence files are named ``events_<set>`` and ``occurrence_<id>`` (e.g.
PiWind's ``events_p.bin``, ``occurrence_lt.bin``); :func:`select_file_ids` picks the suffixes
from the analysis settings, else from the model settings' defaults. Without a suffix the plain
``events`` / ``occurrence`` names are used.

Every problem raises :class:`~perilflow.kernel.oasis.errors.OasisFileError` (a ValueError)
naming the file and how to fix it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.model.dtypes import (
    DAMAGE_BIN_DICT_DTYPE,
    EVENT_RATES_DTYPE,
    EVENTS_DTYPE,
    FOOTPRINT_CSV_DTYPE,
    FOOTPRINT_EVENT_DTYPE,
    FOOTPRINT_HEADER_DTYPE,
    FOOTPRINT_INDEX_DTYPE,
    FOOTPRINT_INDEX_Z_DTYPE,
    OCCURRENCE_DTYPE,
    OCCURRENCE_GRANULAR_DTYPE,
    PERIODS_DTYPE,
    QUANTILE_DTYPE,
    RETURNPERIODS_DTYPE,
    VULNERABILITY_DTYPE,
    VULNERABILITY_INDEX_DTYPE,
    VULNERABILITY_ROW_DTYPE,
)
from perilflow.kernel.oasis.errors import OasisFileError

__all__ = [
    "PROBABILITY_TOLERANCE",
    "Footprint",
    "FootprintBlock",
    "ModelData",
    "Occurrence",
    "Vulnerability",
    "date_id_to_date",
    "date_to_date_id",
    "footprint_from_records",
    "load_model_data",
    "open_footprint",
    "read_damage_bins",
    "read_event_rates",
    "read_events",
    "read_occurrence",
    "read_periods",
    "read_quantiles",
    "read_return_periods",
    "read_vulnerability",
    "select_file_ids",
]

PathLike = str | os.PathLike

#: Probabilities of one footprint areaperil / one vulnerability intensity bin must sum to 1 within this.
PROBABILITY_TOLERANCE = 1e-6

_FOOTPRINT_HEADER_BYTES = FOOTPRINT_HEADER_DTYPE.itemsize
_VULNERABILITY_HEADER_BYTES = 4
_FLAG_INTENSITY_UNCERTAINTY = 1
_FLAG_Z_INDEX_HAS_SIZE = 2


# --------------------------------------------------------------------------- small helpers


def _find(folder: Path, stem: str, suffixes: Iterable[str] = (".bin", ".csv")) -> Path | None:
    """Return ``folder/<stem><suffix>`` for the first suffix that exists, else None."""
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _require(folder: Path, stem: str, what: str, suffixes: Iterable[str] = (".bin", ".csv")) -> Path:
    """Like :func:`_find` but raise a clear error when no file exists."""
    suffixes = tuple(suffixes)
    found = _find(folder, stem, suffixes)
    if found is None:
        names = " or ".join(f"{stem}{suffix}" for suffix in suffixes)
        raise OasisFileError(folder / f"{stem}{suffixes[-1]}", f"{what} not found (looked for {names} in {folder})",
                             fix="copy the model's data files into that folder, or point model_data_dir at them.")
    return found


def _fromfile(path: Path, dtype: np.dtype, offset: int = 0, what: str = "record") -> np.ndarray:
    """Memory-map ``path`` as records of ``dtype`` after ``offset`` header bytes (read-only)."""
    size = path.stat().st_size - offset
    if size < 0 or size % dtype.itemsize:
        raise OasisFileError(path, f"file size {path.stat().st_size} bytes does not fit a {offset}-byte header "
                             f"followed by {dtype.itemsize}-byte {what}s",
                             fix="the file is truncated or is not this kind of file; regenerate it.")
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(size // dtype.itemsize,))


def _read_csv(path: Path, dtype: np.dtype, columns: dict[str, str] | None = None) -> np.ndarray:
    """Read a csv file into ``dtype``; columns are matched by (stripped) header name.

    Parameters
    ----------
    path : pathlib.Path
        The csv file (one header line).
    dtype : numpy.dtype
        Structured output layout.
    columns : dict, optional
        Field name -> csv header name, where they differ.

    Returns
    -------
    numpy.ndarray
        Structured array of ``dtype``.
    """
    columns = columns or {}
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise OasisFileError(path, "the file is empty", fix="write the header line, then the data.") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise OasisFileError(path, f"cannot parse the file ({exc})", fix="save it as plain comma-separated UTF-8.") \
            from None
    frame.columns = [str(name).strip() for name in frame.columns]
    out = np.empty(len(frame), dtype=dtype)
    for name in dtype.names:
        header = columns.get(name, name)
        if header not in frame.columns:
            raise OasisFileError(path, f"missing column '{header}'", column=header,
                                 fix=f"the header must contain: {','.join(columns.get(n, n) for n in dtype.names)}.")
        values = pd.to_numeric(frame[header], errors="coerce").to_numpy()
        bad = np.flatnonzero(np.isnan(values)) if values.dtype.kind == "f" else np.zeros(0, int)
        if len(bad):
            raise OasisFileError(path, f"{frame[header].iloc[bad[0]]!r} is not a number", row=int(bad[0]) + 1,
                                 column=header, fix="write a number in every cell.")
        target = dtype.fields[name][0]
        if target.kind in "iu" and values.dtype.kind == "f" and np.any(values != np.round(values)):
            row = int(np.flatnonzero(values != np.round(values))[0])
            raise OasisFileError(path, f"{values[row]!r} is not a whole number", row=row + 1, column=header,
                                 fix="write an integer.")
        out[name] = values
    return out


def _read_table(path: Path, dtype: np.dtype, columns: dict[str, str] | None = None) -> np.ndarray:
    """Read ``path`` (``.bin`` memory-mapped, ``.csv`` parsed) as records of ``dtype``."""
    if path.suffix == ".csv":
        return _read_csv(path, dtype, columns)
    return _fromfile(path, dtype)


# --------------------------------------------------------------------------- file ids


def select_file_ids(analysis_settings: dict | None = None,
                    model_settings: dict | None = None) -> tuple[str | None, str | None]:
    """Pick the event set and occurrence suffixes (``events_<set>``, ``occurrence_<id>``).

    Parameters
    ----------
    analysis_settings : dict, optional
        Analysis settings; ``model_settings.event_set`` / ``model_settings.event_occurrence_id``
        win when present.
    model_settings : dict, optional
        The model settings file; its ``model_settings.event_set.default`` and
        ``model_settings.event_occurrence_id.default`` are the fallbacks.

    Returns
    -------
    (str or None, str or None)
        Event set id and occurrence id; None means the un-suffixed file names.
    """
    chosen = dict((analysis_settings or {}).get("model_settings") or {})
    defaults = (model_settings or {}).get("model_settings") or {}

    def pick(key: str) -> str | None:
        value = chosen.get(key)
        if value in (None, ""):
            value = (defaults.get(key) or {}).get("default")
        return None if value in (None, "") else str(value)

    return pick("event_set"), pick("event_occurrence_id")


def _stem(base: str, file_id: str | None) -> str:
    return f"{base}_{file_id}" if file_id else base


# --------------------------------------------------------------------------- small tables


def read_events(model_dir: PathLike, event_set: str | None = None) -> np.ndarray:
    """Read the event set ``events_<set>.bin`` (or ``.csv``).

    Returns
    -------
    numpy.ndarray
        int32 ``[n_events]`` event ids, in file order.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = _require(path, _stem("events", event_set), "event set file")
    return np.asarray(_read_table(path, EVENTS_DTYPE)["event_id"])


def read_damage_bins(model_dir: PathLike) -> np.ndarray:
    """Read and check ``damage_bin_dict.bin`` (or ``.csv``).

    Returns
    -------
    numpy.ndarray
        Structured ``DAMAGE_BIN_DICT_DTYPE`` ``[n_bins]`` (bin_index 1..n in order; bin_from,
        bin_to and interpolation are damage ratios or amounts, float32; damage_type int32).

    Raises
    ------
    OasisFileError
        If bin_index is not 1, 2, ..., n, an interpolation lies outside [bin_from, bin_to], a
        bin_to is below its bin_from, or a damage_type is not 0-3.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = _require(path, "damage_bin_dict", "damage bin dictionary")
    bins = np.array(_read_table(path, DAMAGE_BIN_DICT_DTYPE))
    if len(bins) == 0:
        raise OasisFileError(path, "the damage bin dictionary is empty", fix="add the damage bins.")
    wrong = np.flatnonzero(bins["bin_index"] != np.arange(1, len(bins) + 1))
    if len(wrong):
        raise OasisFileError(path, f"bin_index {bins['bin_index'][wrong[0]]} where {wrong[0] + 1} was expected: "
                             "bins must be numbered 1, 2, 3, ... in order", row=int(wrong[0]) + 1,
                             column="bin_index", fix="number the bins contiguously from 1, sorted.")
    outside = np.flatnonzero((bins["interpolation"] < bins["bin_from"]) | (bins["interpolation"] > bins["bin_to"]))
    if len(outside):
        i = int(outside[0])
        raise OasisFileError(path, f"interpolation {bins['interpolation'][i]} is outside [bin_from, bin_to] = "
                             f"[{bins['bin_from'][i]}, {bins['bin_to'][i]}]", row=i + 1, column="interpolation",
                             fix="the interpolation value is the bin's mean damage and must lie within the bin.")
    bad_type = np.flatnonzero(~np.isin(bins["damage_type"], (0, 1, 2, 3)))
    if len(bad_type):
        i = int(bad_type[0])
        raise OasisFileError(path, f"damage_type {bins['damage_type'][i]} is not 0, 1, 2 or 3", row=i + 1,
                             column="damage_type", fix="use 0 (default), 1 (relative), 2 (absolute) or 3 (duration).")
    return bins


@dataclass(frozen=True)
class Occurrence:
    """The occurrence file: which events happen in which period, and when.

    Attributes
    ----------
    records : numpy.ndarray
        Structured ``OCCURRENCE_DTYPE`` (``occ_date_id`` int32) or, when ``granular``,
        ``OCCURRENCE_GRANULAR_DTYPE`` (int64, minutes), in file order.
    no_of_periods : int
        Number of periods P of the event catalogue (period_no is in 1..P).
    date_algorithm : bool
        True when ``occ_date_id`` follows the civil-day algorithm of :func:`date_to_date_id`.
    granular : bool
        True when ``occ_date_id`` counts minutes (day id x 1440 + 60 hour + minute).
    """

    records: np.ndarray
    no_of_periods: int
    date_algorithm: bool
    granular: bool


def date_to_date_id(year, month, day, hour=None, minute=None) -> np.ndarray:
    """Occurrence date id of a civil date (the algorithm of ktools / oasislmf's ``occurrencetobin``).

    With m = (month + 9) mod 12 and y = year - m // 10, the day id is
    365 y + y//4 - y//100 + y//400 + (306 m + 5)//10 + day - 1; with ``hour`` and ``minute``
    the granular id is day_id x 1440 + 60 hour + minute.

    Parameters
    ----------
    year, month, day : array_like of int
        Civil date (month 1-12, day 1-31).
    hour, minute : array_like of int, optional
        Time of day; both given means granular ids.

    Returns
    -------
    numpy.ndarray
        int64 date ids.
    """
    m = (np.asarray(month, dtype=np.int64) + 9) % 12
    y = np.asarray(year, dtype=np.int64) - m // 10
    date_id = 365 * y + y // 4 - y // 100 + y // 400 + (m * 306 + 5) // 10 + (np.asarray(day, dtype=np.int64) - 1)
    if hour is not None and minute is not None:
        date_id = date_id * 1440 + 60 * np.asarray(hour, dtype=np.int64) + np.asarray(minute, dtype=np.int64)
    return date_id


def date_id_to_date(date_id, granular: bool = False) -> tuple[np.ndarray, ...]:
    """Inverse of :func:`date_to_date_id`.

    Parameters
    ----------
    date_id : array_like of int
        Date ids (minutes when ``granular``).
    granular : bool
        Whether the ids count minutes.

    Returns
    -------
    tuple of numpy.ndarray
        int64 arrays (year, month, day, hour, minute); hour and minute are 0 unless granular.
    """
    date_id = np.atleast_1d(np.asarray(date_id, dtype=np.int64))
    days = date_id // 1440 if granular else date_id
    y = (10000 * days + 14780) // 3652425
    ddd = days - (365 * y + y // 4 - y // 100 + y // 400)
    before = ddd < 0
    y = np.where(before, y - 1, y)
    ddd = np.where(before, days - (365 * y + y // 4 - y // 100 + y // 400), ddd)
    mi = (100 * ddd + 52) // 3060
    month = (mi + 2) % 12 + 1
    year = y + (mi + 2) // 12
    day = ddd - (mi * 306 + 5) // 10 + 1
    minutes = date_id % 1440 if granular else np.zeros_like(date_id)
    return year, month, day, minutes // 60, minutes % 60


def read_occurrence(model_dir: PathLike, occurrence_id: str | None = None,
                    no_of_periods: int | None = None) -> Occurrence:
    """Read ``occurrence_<id>.bin`` (memory-mapped) or ``.csv``.

    Parameters
    ----------
    model_dir : path
        The model data folder, or the file itself.
    occurrence_id : str, optional
        Suffix of the file name (PiWind: ``"lt"``).
    no_of_periods : int, optional
        Number of periods; a csv file does not store it and defaults to its largest period_no.
        For a ``.bin`` file it must agree with the header when given.

    Returns
    -------
    Occurrence

    Notes
    -----
    A csv file holds either ``occ_date_id`` (no date algorithm) or ``occ_year, occ_month,
    occ_day`` (date algorithm), plus ``occ_hour, occ_minute`` for granular dates.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = _require(path, _stem("occurrence", occurrence_id), "occurrence file")
    if path.suffix == ".csv":
        header = [name.strip() for name in pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns]
        granular = "occ_hour" in header and "occ_minute" in header
        if "occ_year" in header:
            names = ["event_id", "period_no", "occ_year", "occ_month", "occ_day"]
            names += ["occ_hour", "occ_minute"] if granular else []
            raw = _read_csv(path, np.dtype([(name, "<i8") for name in names]))
            records = np.empty(len(raw), dtype=OCCURRENCE_GRANULAR_DTYPE if granular else OCCURRENCE_DTYPE)
            records["event_id"] = raw["event_id"]
            records["period_no"] = raw["period_no"]
            records["occ_date_id"] = date_to_date_id(raw["occ_year"], raw["occ_month"], raw["occ_day"],
                                                     raw["occ_hour"] if granular else None,
                                                     raw["occ_minute"] if granular else None)
            date_algorithm = True
        else:
            records, date_algorithm, granular = _read_csv(path, OCCURRENCE_DTYPE), False, False
        periods = int(no_of_periods) if no_of_periods is not None else int(records["period_no"].max(initial=0))
    else:
        header = np.fromfile(path, dtype="<i4", count=2)
        if len(header) < 2:
            raise OasisFileError(path, "the file is shorter than its 8-byte header",
                                 fix="regenerate it (e.g. with occurrencetobin).")
        options, periods = int(header[0]), int(header[1])
        date_algorithm, granular = bool(options & 1), bool(options & 2)
        if granular and not date_algorithm:
            raise OasisFileError(path, "header says granular dates without the date algorithm",
                                 fix="regenerate the file; granular dates need the date algorithm.")
        if no_of_periods is not None and int(no_of_periods) != periods:
            raise OasisFileError(path, f"header says {periods} periods, but {no_of_periods} were expected",
                                 fix="use the occurrence file of this event catalogue.")
        records = _fromfile(path, OCCURRENCE_GRANULAR_DTYPE if granular else OCCURRENCE_DTYPE, offset=8,
                            what="occurrence record")
    bad = np.flatnonzero((records["period_no"] < 1) | (records["period_no"] > periods))
    if len(bad):
        raise OasisFileError(path, f"period_no {records['period_no'][bad[0]]} is outside 1..{periods}",
                             row=int(bad[0]) + 1, column="period_no", fix="periods are numbered 1 to no_of_periods.")
    return Occurrence(records=records, no_of_periods=periods, date_algorithm=date_algorithm, granular=granular)


def read_periods(model_dir: PathLike, no_of_periods: int) -> np.ndarray:
    """Read ``periods.bin`` / ``.csv``; without one every period weighs 1 / no_of_periods.

    Returns
    -------
    numpy.ndarray
        Structured ``PERIODS_DTYPE`` ``[no_of_periods]`` sorted by period_no (weighting float64).

    Raises
    ------
    OasisFileError
        If the file does not hold each of the periods 1..no_of_periods exactly once.
    """
    folder = Path(model_dir)
    path = _find(folder, "periods") if folder.is_dir() else folder
    if path is None:
        periods = np.empty(no_of_periods, dtype=PERIODS_DTYPE)
        periods["period_no"] = np.arange(1, no_of_periods + 1)
        periods["weighting"] = 1.0 / no_of_periods
        return periods
    periods = np.sort(np.array(_read_table(path, PERIODS_DTYPE)), order="period_no")
    if len(periods) != no_of_periods or np.any(periods["period_no"] != np.arange(1, no_of_periods + 1)):
        raise OasisFileError(path, f"the file must list each period 1..{no_of_periods} once "
                             f"(it has {len(periods)} rows)", fix="add the missing periods, or delete the file to "
                             "weigh every period equally.")
    return periods


def read_return_periods(model_dir: PathLike) -> np.ndarray:
    """Read ``returnperiods.bin`` / ``.csv``.

    Returns
    -------
    numpy.ndarray
        int32 ``[n]`` return periods (years), unique and descending as in the file.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = _require(path, "returnperiods", "return periods file")
    values = np.asarray(_read_table(path, RETURNPERIODS_DTYPE)["return_period"])
    if np.any(np.diff(values) >= 0):
        raise OasisFileError(path, "return periods must be unique and in descending order",
                             fix="sort them from the largest down and drop repeats.")
    return values


def read_quantiles(model_dir: PathLike) -> np.ndarray:
    """Read ``quantile.bin`` / ``.csv``.

    Returns
    -------
    numpy.ndarray
        float32 ``[n]`` quantiles in [0, 1], in file order.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = _require(path, "quantile", "quantile file")
    values = np.asarray(_read_table(path, QUANTILE_DTYPE)["quantile"])
    if np.any((values < 0) | (values > 1)):
        raise OasisFileError(path, "quantiles must lie in [0, 1]", fix="write quantiles as fractions (0.5, not 50).")
    return values


def read_event_rates(model_dir: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``event_rates.csv`` (columns ``EventIds, Event_rates``).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int32 event ids (sorted) and their float32 annual rates; both empty without the file.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = path / "event_rates.csv"
    if not path.is_file():
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    rates = _read_csv(path, EVENT_RATES_DTYPE, {"event_id": "EventIds", "rate": "Event_rates"})
    order = np.argsort(rates["event_id"], kind="stable")
    return rates["event_id"][order], rates["rate"][order]


# --------------------------------------------------------------------------- footprint


@dataclass(frozen=True)
class FootprintBlock:
    """The footprint rows of a block of events, as CSR arrays.

    Attributes
    ----------
    event_ptr : numpy.ndarray
        int64 ``[n_events + 1]``: event ``e`` of the block owns rows ``event_ptr[e]:event_ptr[e+1]``
        (none when the footprint does not have it).
    areaperil_id : numpy.ndarray
        uint32 ``[n_rows]``, sorted within each event.
    intensity_bin_id : numpy.ndarray
        int32 ``[n_rows]``, in 1..num_intensity_bins.
    probability : numpy.ndarray
        float32 ``[n_rows]``; each (event, areaperil) sums to 1.
    """

    event_ptr: np.ndarray
    areaperil_id: np.ndarray
    intensity_bin_id: np.ndarray
    probability: np.ndarray


class Footprint:
    """A footprint file opened for reading event by event.

    Open one with :func:`open_footprint`. Attributes: ``path``, ``format`` (``"bin"``, ``"binZ"``,
    ``"csv"``, ``"parquet"``), ``num_intensity_bins`` (int), ``has_intensity_uncertainty`` (bool)
    and ``event_ids`` (sorted int32 array of the events the footprint holds).
    """

    def __init__(self, path: Path, fmt: str, num_intensity_bins: int, has_intensity_uncertainty: bool,
                 event_ids: np.ndarray) -> None:
        self.path = path
        self.format = fmt
        self.num_intensity_bins = int(num_intensity_bins)
        self.has_intensity_uncertainty = bool(has_intensity_uncertainty)
        self.event_ids = event_ids

    def _event_records(self, position: int) -> np.ndarray:
        """The records of the ``position``-th event of ``event_ids`` (FOOTPRINT_EVENT_DTYPE)."""
        raise NotImplementedError

    def _gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts and concatenated records of the events at ``positions`` (-1 = absent)."""
        parts = [self._event_records(int(p)) if p >= 0 else np.zeros(0, FOOTPRINT_EVENT_DTYPE) for p in positions]
        counts = np.array([len(part) for part in parts], dtype=np.int64)
        records = np.concatenate(parts) if parts else np.zeros(0, FOOTPRINT_EVENT_DTYPE)
        return counts, records

    def event_block(self, event_ids: np.ndarray, validate: bool = True) -> FootprintBlock:
        """Read the footprint rows of ``event_ids``.

        Parameters
        ----------
        event_ids : array_like of int
            Events wanted, in any order (repeats allowed); events the footprint does not hold
            get no rows.
        validate : bool, default True
            Check the rows (see the module docstring); cheap next to the loss calculation.

        Returns
        -------
        FootprintBlock
            Rows in the order of ``event_ids``.

        Raises
        ------
        OasisFileError
            If ``validate`` and an event's rows break a rule.
        """
        wanted = np.asarray(event_ids, dtype=np.int64)
        positions = np.full(len(wanted), -1, dtype=np.int64)
        if len(self.event_ids):
            candidate = np.minimum(np.searchsorted(self.event_ids, wanted), len(self.event_ids) - 1)
            positions = np.where(self.event_ids[candidate] == wanted, candidate, -1)
        counts, records = self._gather(positions)
        event_ptr = np.zeros(len(wanted) + 1, dtype=np.int64)
        np.cumsum(counts, out=event_ptr[1:])
        block = FootprintBlock(event_ptr=event_ptr,
                               areaperil_id=np.ascontiguousarray(records["areaperil_id"]),
                               intensity_bin_id=np.ascontiguousarray(records["intensity_bin_id"]),
                               probability=np.ascontiguousarray(records["probability"]))
        if validate:
            self._check_block(wanted, block)
        return block

    def _check_block(self, event_ids: np.ndarray, block: FootprintBlock) -> None:
        """Raise OasisFileError naming the first event whose rows break a footprint rule."""
        n_rows = len(block.areaperil_id)
        if n_rows == 0:
            return
        row_event = np.repeat(np.arange(len(event_ids)), np.diff(block.event_ptr))
        same_event = row_event[1:] == row_event[:-1]
        ap = block.areaperil_id.astype(np.int64)
        ibin = block.intensity_bin_id

        def fail(row: int, problem: str, fix: str) -> None:
            raise OasisFileError(self.path, f"event {event_ids[row_event[row]]}: {problem}", fix=fix)

        bad = np.flatnonzero(same_event & (ap[1:] < ap[:-1]))
        if len(bad):
            fail(int(bad[0]) + 1, f"areaperil_id {ap[bad[0] + 1]} follows {ap[bad[0]]} (rows must be sorted by "
                 "areaperil_id)", "sort each event's rows by areaperil_id (the converters check this).")
        same_group = same_event & (ap[1:] == ap[:-1])
        bad = np.flatnonzero(same_group & (ibin[1:] == ibin[:-1]))
        if len(bad):
            fail(int(bad[0]) + 1, f"areaperil_id {ap[bad[0]]} lists intensity_bin_id {ibin[bad[0]]} twice",
                 "merge the repeated rows.")
        bad = np.flatnonzero((ibin < 1) | (ibin > self.num_intensity_bins))
        if len(bad):
            fail(int(bad[0]), f"intensity_bin_id {ibin[bad[0]]} is outside 1..{self.num_intensity_bins}",
                 "fix the row, or the footprint header's number of intensity bins.")
        starts = np.flatnonzero(np.concatenate(([True], ~same_group)))
        sums = np.add.reduceat(block.probability.astype(np.float64), starts)
        bad = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE)
        if len(bad):
            row = int(starts[bad[0]])
            fail(row, f"probabilities of areaperil_id {ap[row]} sum to {sums[bad[0]]:.9g}, not 1",
                 f"each (event, areaperil) must sum to 1 within {PROBABILITY_TOLERANCE}.")


class _FootprintBin(Footprint):
    """``footprint.bin`` + ``footprint.idx``, memory-mapped."""

    def __init__(self, path: Path, index_path: Path) -> None:
        header = np.fromfile(path, dtype=FOOTPRINT_HEADER_DTYPE, count=1)
        if len(header) != 1:
            raise OasisFileError(path, "the file is shorter than its 8-byte header", fix="regenerate the footprint.")
        index = np.array(_fromfile(index_path, FOOTPRINT_INDEX_DTYPE, what="index record"))
        body_bytes = path.stat().st_size - _FOOTPRINT_HEADER_BYTES
        record = FOOTPRINT_EVENT_DTYPE.itemsize
        misplaced = ((index["offset"] - _FOOTPRINT_HEADER_BYTES) % record != 0) | (index["size"] % record != 0) | \
            (index["offset"] < _FOOTPRINT_HEADER_BYTES) | \
            (index["offset"] + index["size"] > _FOOTPRINT_HEADER_BYTES + body_bytes)
        if np.any(misplaced):
            i = int(np.flatnonzero(misplaced)[0])
            raise OasisFileError(index_path, f"event {index['event_id'][i]} points outside footprint.bin or between "
                                 "records", row=i + 1, fix="regenerate footprint.bin and footprint.idx together.")
        order = np.argsort(index["event_id"], kind="stable")
        index = index[order]
        if np.any(np.diff(index["event_id"]) == 0):
            raise OasisFileError(index_path, "an event_id appears twice", fix="regenerate the index.")
        super().__init__(path, "bin", header["num_intensity_bins"][0],
                         header["flags"][0] & _FLAG_INTENSITY_UNCERTAINTY, index["event_id"].astype(np.int32))
        self._start = (index["offset"] - _FOOTPRINT_HEADER_BYTES) // record
        self._count = index["size"] // record
        self._body = _fromfile(path, FOOTPRINT_EVENT_DTYPE, offset=_FOOTPRINT_HEADER_BYTES, what="footprint record")

    def _gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = positions >= 0
        counts = np.where(found, self._count[positions], 0).astype(np.int64)
        starts = np.where(found, self._start[positions], 0).astype(np.int64)
        # row r of the block reads body[starts[e] + (r - first row of e)]
        first = np.cumsum(counts) - counts
        rows = np.repeat(starts - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)
        return counts, np.asarray(self._body[rows])


class _FootprintBinZ(Footprint):
    """``footprint.bin.z`` + ``footprint.idx.z``: each event zlib-compressed on its own."""

    def __init__(self, path: Path, index_path: Path) -> None:
        header = np.fromfile(path, dtype=FOOTPRINT_HEADER_DTYPE, count=1)
        if len(header) != 1:
            raise OasisFileError(path, "the file is shorter than its 8-byte header", fix="regenerate the footprint.")
        flags = int(header["flags"][0])
        index_dtype = FOOTPRINT_INDEX_Z_DTYPE if flags & _FLAG_Z_INDEX_HAS_SIZE else FOOTPRINT_INDEX_DTYPE
        index = np.array(_fromfile(index_path, index_dtype, what="index record"))
        index = index[np.argsort(index["event_id"], kind="stable")]
        super().__init__(path, "binZ", header["num_intensity_bins"][0], flags & _FLAG_INTENSITY_UNCERTAINTY,
                         index["event_id"].astype(np.int32))
        self._index = index
        self._data = np.memmap(path, dtype=np.uint8, mode="r")

    def _event_records(self, position: int) -> np.ndarray:
        entry = self._index[position]
        raw = self._data[int(entry["offset"]): int(entry["offset"]) + int(entry["size"])]
        try:
            data = zlib.decompress(raw.tobytes())
        except zlib.error as exc:
            raise OasisFileError(self.path, f"event {entry['event_id']} cannot be decompressed ({exc})",
                                 fix="regenerate footprint.bin.z and footprint.idx.z together.") from None
        if len(data) % FOOTPRINT_EVENT_DTYPE.itemsize:
            raise OasisFileError(self.path, f"event {entry['event_id']} decompresses to {len(data)} bytes, not whole "
                                 "records", fix="regenerate the footprint.")
        return np.frombuffer(data, dtype=FOOTPRINT_EVENT_DTYPE)


class _FootprintInMemory(Footprint):
    """A footprint held in memory, sorted by event (csv, or an eagerly read parquet dataset)."""

    def __init__(self, path: Path, fmt: str, rows: np.ndarray, num_intensity_bins: int,
                 has_intensity_uncertainty: bool) -> None:
        if np.any(np.diff(rows["event_id"]) < 0):
            raise OasisFileError(path, "rows are not sorted by event_id", fix="sort the footprint by event_id, "
                                 "then areaperil_id.")
        event_ids, starts, counts = np.unique(rows["event_id"], return_index=True, return_counts=True)
        super().__init__(path, fmt, num_intensity_bins, has_intensity_uncertainty, event_ids.astype(np.int32))
        self._starts, self._counts = starts, counts
        self._records = np.empty(len(rows), dtype=FOOTPRINT_EVENT_DTYPE)
        for name in FOOTPRINT_EVENT_DTYPE.names:
            self._records[name] = rows[name]

    def _event_records(self, position: int) -> np.ndarray:
        start = self._starts[position]
        return self._records[start: start + self._counts[position]]


class _FootprintParquet(Footprint):
    """``footprint.parquet/event_id=<id>/*.parquet`` with ``footprint_parquet_meta.json``."""

    def __init__(self, folder: Path, meta_path: Path) -> None:
        meta = json.loads(meta_path.read_text())
        event_ids = sorted(int(child.name.split("=", 1)[1]) for child in folder.iterdir()
                           if child.is_dir() and child.name.startswith("event_id="))
        super().__init__(folder, "parquet", meta["num_intensity_bins"], bool(meta.get("has_intensity_uncertainty")),
                         np.asarray(event_ids, dtype=np.int32))

    def _event_records(self, position: int) -> np.ndarray:
        import pyarrow.parquet as pq

        frame = pq.read_table(self.path / f"event_id={self.event_ids[position]}").to_pandas()
        frame = frame.sort_values("areaperil_id", kind="stable")
        records = np.empty(len(frame), dtype=FOOTPRINT_EVENT_DTYPE)
        for name in FOOTPRINT_EVENT_DTYPE.names:
            records[name] = frame[name].to_numpy()
        return records


def footprint_from_records(rows: np.ndarray, num_intensity_bins: int | None = None,
                           has_intensity_uncertainty: bool | None = None, name: str = "<memory>") -> Footprint:
    """A footprint built from records held in memory (e.g. a generated or converted footprint).

    Parameters
    ----------
    rows : numpy.ndarray
        Structured with event_id, areaperil_id, intensity_bin_id and probability, sorted by
        event_id then areaperil_id.
    num_intensity_bins : int, optional
        Default: the largest intensity_bin_id.
    has_intensity_uncertainty : bool, optional
        Default: whether some (event, areaperil) has more than one row.
    name : str
        Shown in error messages in place of a file name.

    Returns
    -------
    Footprint
    """
    records = np.empty(len(rows), dtype=FOOTPRINT_CSV_DTYPE)
    for column in FOOTPRINT_CSV_DTYPE.names:
        records[column] = rows[column]
    order = np.lexsort((records["areaperil_id"], records["event_id"]))
    if np.any(order != np.arange(len(records))):
        raise OasisFileError(name, "rows are not sorted by event_id, then areaperil_id",
                             fix="sort the footprint by event_id, then areaperil_id.")
    if num_intensity_bins is None:
        num_intensity_bins = int(records["intensity_bin_id"].max(initial=0))
    if has_intensity_uncertainty is None:
        keys = records["event_id"].astype(np.int64) * (2**32) + records["areaperil_id"]
        has_intensity_uncertainty = bool(len(keys) and np.any(keys[1:] == keys[:-1]))
    return _FootprintInMemory(Path(name), "memory", records, num_intensity_bins, has_intensity_uncertainty)


def open_footprint(model_dir: PathLike) -> Footprint:
    """Open the footprint of a model data folder (format order in the module docstring).

    Returns
    -------
    Footprint
        An object with ``num_intensity_bins``, ``event_ids`` and ``event_block(event_ids)``.
    """
    folder = Path(model_dir)
    parquet, meta = folder / "footprint.parquet", folder / "footprint_parquet_meta.json"
    if parquet.is_dir() and meta.is_file():
        return _FootprintParquet(parquet, meta)
    if (folder / "footprint.bin.z").is_file() and (folder / "footprint.idx.z").is_file():
        return _FootprintBinZ(folder / "footprint.bin.z", folder / "footprint.idx.z")
    if (folder / "footprint.bin").is_file():
        if not (folder / "footprint.idx").is_file():
            raise OasisFileError(folder / "footprint.idx", "footprint.bin has no index file",
                                 fix="copy footprint.idx next to footprint.bin (they are written together).")
        return _FootprintBin(folder / "footprint.bin", folder / "footprint.idx")
    path = _require(folder, "footprint", "footprint", (".bin", ".csv"))
    footprint = footprint_from_records(_read_csv(path, FOOTPRINT_CSV_DTYPE), name=str(path))
    footprint.format = "csv"
    return footprint


# --------------------------------------------------------------------------- vulnerability


@dataclass(frozen=True)
class Vulnerability:
    """Dense vulnerability functions.

    Attributes
    ----------
    ids : numpy.ndarray
        int32 ``[n_vulnerabilities]`` vulnerability ids, ascending.
    array : numpy.ndarray
        float32 ``[n_vulnerabilities, num_damage_bins, num_intensity_bins]``: probability of
        damage bin d+1 given intensity bin i+1; a column is all 0 where the file has no rows for
        that intensity bin.
    """

    ids: np.ndarray
    array: np.ndarray

    @property
    def num_damage_bins(self) -> int:
        return int(self.array.shape[1])

    def index_of(self, vulnerability_ids: np.ndarray) -> np.ndarray:
        """Rows of ``array`` for ``vulnerability_ids`` (int64); raises ValueError for unknown ids."""
        wanted = np.asarray(vulnerability_ids)
        rows = np.searchsorted(self.ids, wanted)
        rows = np.minimum(rows, max(len(self.ids) - 1, 0))
        missing = (self.ids[rows] != wanted) if len(self.ids) else np.ones(len(wanted), bool)
        if np.any(missing):
            unknown = np.unique(wanted[missing])
            raise ValueError(f"vulnerability ids {unknown[:10].tolist()} are not in the model's vulnerability data; "
                             "load the model data with these ids, or fix the items' vulnerability_id.")
        return rows.astype(np.int64)


def _fill_dense(path: Path, rows: np.ndarray, vuln_rows: np.ndarray, n_damage: int, n_intensity: int,
                out: np.ndarray) -> None:
    """Scatter (intensity_bin_id, damage_bin_id, probability) rows into ``out[vuln_rows]``."""
    damage, intensity = rows["damage_bin_id"], rows["intensity_bin_id"]
    bad = np.flatnonzero((damage < 1) | (damage > n_damage) | (intensity < 1))
    if len(bad):
        raise OasisFileError(path, f"damage_bin_id {damage[bad[0]]} / intensity_bin_id {intensity[bad[0]]} out of "
                             f"range (damage bins are 1..{n_damage}, intensity bins start at 1)",
                             fix="fix the row, or the file header's number of damage bins.")
    keep = intensity <= n_intensity  # intensity bins beyond the footprint's never occur (as the reference)
    out[vuln_rows[keep], damage[keep] - 1, intensity[keep] - 1] = rows["probability"][keep]


def read_vulnerability(model_dir: PathLike, num_intensity_bins: int,
                       vulnerability_ids: Iterable[int] | None = None) -> Vulnerability:
    """Read the vulnerability functions into a dense array.

    Parameters
    ----------
    model_dir : path
        The model data folder.
    num_intensity_bins : int
        The footprint's number of intensity bins (size of the intensity axis).
    vulnerability_ids : iterable of int, optional
        Only these vulnerabilities (all of them must exist); default every one in the file.

    Returns
    -------
    Vulnerability

    Raises
    ------
    OasisFileError
        If no file is found, a bin is out of range, a requested id is missing, or the
        probabilities of a (vulnerability, intensity bin) do not sum to 1 within 1e-6.
    """
    folder = Path(model_dir)
    wanted = None if vulnerability_ids is None else np.unique(np.fromiter(vulnerability_ids, dtype=np.int64))
    dataset, meta = folder / "vulnerability_dataset.parquet", folder / "vulnerability_parquet_meta.json"
    if dataset.is_dir() and meta.is_file():
        path, vuln = dataset, _read_vulnerability_parquet(dataset, meta, num_intensity_bins, wanted)
    elif (folder / "vulnerability.bin").is_file():
        path = folder / "vulnerability.bin"
        index = folder / "vulnerability.idx"
        vuln = _read_vulnerability_indexed(path, index, num_intensity_bins, wanted, False) if index.is_file() else \
            _read_vulnerability_flat(path, num_intensity_bins, wanted)
    elif (folder / "vulnerability.bin.z").is_file() and (folder / "vulnerability.idx.z").is_file():
        path = folder / "vulnerability.bin.z"
        vuln = _read_vulnerability_indexed(path, folder / "vulnerability.idx.z", num_intensity_bins, wanted, True)
    else:
        path = _require(folder, "vulnerability", "vulnerability file")
        rows = _read_csv(path, VULNERABILITY_DTYPE)
        vuln = _dense_from_rows(path, rows, int(rows["damage_bin_id"].max(initial=0)), num_intensity_bins, wanted)
    _check_vulnerability(path, vuln)
    return vuln


def _select_ids(path: Path, present: np.ndarray, wanted: np.ndarray | None) -> np.ndarray:
    """The ids to load: ``wanted`` (all must be in ``present``) or every present id."""
    present = np.unique(present)
    if wanted is None:
        return present.astype(np.int32)
    missing = np.setdiff1d(wanted, present)
    if len(missing):
        raise OasisFileError(path, f"vulnerability ids {missing[:10].tolist()} are missing",
                             fix="the items use vulnerabilities the model does not define; check the keys lookup "
                             "and the model version.")
    return wanted.astype(np.int32)


def _dense_from_rows(path: Path, rows: np.ndarray, n_damage: int, n_intensity: int,
                     wanted: np.ndarray | None) -> Vulnerability:
    ids = _select_ids(path, rows["vulnerability_id"], wanted)
    position = np.searchsorted(ids, rows["vulnerability_id"])
    position = np.minimum(position, len(ids) - 1)
    keep = ids[position] == rows["vulnerability_id"]
    array = np.zeros((len(ids), n_damage, n_intensity), dtype=np.float32)
    sub = rows[keep] if not keep.all() else rows
    _fill_dense(path, sub, position[keep], n_damage, n_intensity, array)
    return Vulnerability(ids=ids, array=array)


def _read_vulnerability_flat(path: Path, n_intensity: int, wanted: np.ndarray | None) -> Vulnerability:
    n_damage = int(np.fromfile(path, dtype="<i4", count=1)[0])
    rows = _fromfile(path, VULNERABILITY_DTYPE, offset=_VULNERABILITY_HEADER_BYTES, what="vulnerability record")
    return _dense_from_rows(path, rows, n_damage, n_intensity, wanted)


def _read_vulnerability_indexed(path: Path, index_path: Path, n_intensity: int, wanted: np.ndarray | None,
                                compressed: bool) -> Vulnerability:
    n_damage = int(np.fromfile(path, dtype="<i4", count=1)[0])
    index = np.array(_fromfile(index_path, VULNERABILITY_INDEX_DTYPE, what="index record"))
    ids = _select_ids(index_path, index["vulnerability_id"], wanted)
    array = np.zeros((len(ids), n_damage, n_intensity), dtype=np.float32)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    record = VULNERABILITY_ROW_DTYPE.itemsize
    for entry in index[np.isin(index["vulnerability_id"], ids)]:
        raw = data[int(entry["offset"]): int(entry["offset"]) + int(entry["size"])]
        if len(raw) != entry["size"]:
            raise OasisFileError(index_path, f"vulnerability {entry['vulnerability_id']} points past the end of "
                                 f"{path.name}", fix="regenerate the vulnerability file and its index together.")
        block = zlib.decompress(raw.tobytes()) if compressed else raw.tobytes()
        if len(block) % record:
            raise OasisFileError(path, f"vulnerability {entry['vulnerability_id']} is not whole records",
                                 fix="regenerate the vulnerability file and its index together.")
        rows = np.frombuffer(block, dtype=VULNERABILITY_ROW_DTYPE)
        row = int(np.searchsorted(ids, entry["vulnerability_id"]))
        _fill_dense(path, rows, np.full(len(rows), row), n_damage, n_intensity, array)
    return Vulnerability(ids=ids, array=array)


def _read_vulnerability_parquet(dataset: Path, meta_path: Path, n_intensity: int,
                                wanted: np.ndarray | None) -> Vulnerability:
    import pyarrow.parquet as pq

    meta = json.loads(meta_path.read_text())
    n_damage, file_intensity = int(meta["num_damage_bins"]), int(meta["num_intensity_bins"])
    table = pq.read_table(dataset)
    present = table.column("vulnerability_id").to_numpy()
    ids = _select_ids(dataset, present, wanted)
    values = np.stack(table.column("vuln_array").to_numpy(zero_copy_only=False)) if len(present) else \
        np.zeros((0, n_damage * file_intensity), np.float32)
    values = values.reshape(len(present), n_damage, file_intensity).astype(np.float32)
    array = np.zeros((len(ids), n_damage, n_intensity), dtype=np.float32)
    keep = min(n_intensity, file_intensity)
    order = np.argsort(present, kind="stable")
    array[:, :, :keep] = values[order[np.searchsorted(present[order], ids)], :, :keep]
    return Vulnerability(ids=ids, array=array)


def _check_vulnerability(path: Path, vuln: Vulnerability) -> None:
    """Each (vulnerability, intensity bin) present must sum to 1 within PROBABILITY_TOLERANCE."""
    sums = vuln.array.sum(axis=1, dtype=np.float64)  # [vuln, intensity]
    bad = np.argwhere((sums > 0) & (np.abs(sums - 1.0) > PROBABILITY_TOLERANCE))
    if len(bad):
        v, i = bad[0]
        raise OasisFileError(path, f"probabilities of vulnerability {vuln.ids[v]}, intensity bin {i + 1} sum to "
                             f"{sums[v, i]:.9g}, not 1", fix=f"each (vulnerability, intensity bin) must sum to 1 "
                             f"within {PROBABILITY_TOLERANCE}.")


# --------------------------------------------------------------------------- everything at once


@dataclass
class ModelData:
    """The model data a loss run needs (see :func:`load_model_data`).

    Attributes
    ----------
    footprint : Footprint
        Hazard intensity distributions per event and areaperil, read per event block.
    vulnerability : Vulnerability
        Dense damage distributions per vulnerability and intensity bin.
    damage_bins : numpy.ndarray
        Structured ``DAMAGE_BIN_DICT_DTYPE`` ``[num_damage_bins]``.
    events, occurrence, periods, return_periods, quantiles, event_rates :
        The optional catalogue / output files, None when not loaded or absent.
    """

    footprint: Footprint
    vulnerability: Vulnerability
    damage_bins: np.ndarray
    events: np.ndarray | None = None
    occurrence: Occurrence | None = None
    periods: np.ndarray | None = None
    return_periods: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    event_rates: tuple[np.ndarray, np.ndarray] | None = None
    path: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.vulnerability.array.shape[2] != self.footprint.num_intensity_bins:
            raise ValueError(f"the vulnerability array has {self.vulnerability.array.shape[2]} intensity bins but the "
                             f"footprint {self.footprint.num_intensity_bins}; read the vulnerability with "
                             "num_intensity_bins=footprint.num_intensity_bins.")
        if self.vulnerability.num_damage_bins > len(self.damage_bins):
            raise ValueError(f"the vulnerability data uses {self.vulnerability.num_damage_bins} damage bins but "
                             f"damage_bin_dict defines {len(self.damage_bins)}; use the model's own damage_bin_dict.")


def load_model_data(model_dir: PathLike, *, event_set: str | None = None, occurrence_id: str | None = None,
                    vulnerability_ids: Iterable[int] | None = None, catalogue: bool = True,
                    analysis_settings: dict | None = None, model_settings: dict | None = None) -> ModelData:
    """Open a model data folder.

    Parameters
    ----------
    model_dir : path
        The folder (PiWind: ``model_data/PiWind``).
    event_set, occurrence_id : str, optional
        File suffixes; default from :func:`select_file_ids` (analysis settings, then model settings).
    vulnerability_ids : iterable of int, optional
        Load only these vulnerabilities (e.g. ``np.unique(items["vulnerability_id"])``).
    catalogue : bool, default True
        Also read events, occurrence, periods, return periods, quantiles and event rates when present.
    analysis_settings, model_settings : dict, optional
        Used to choose the event set and occurrence files.

    Returns
    -------
    ModelData
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise OasisFileError(folder, "model data folder not found", fix="check model_data_dir.")
    if event_set is None or occurrence_id is None:
        chosen_set, chosen_occurrence = select_file_ids(analysis_settings, model_settings)
        event_set = event_set if event_set is not None else chosen_set
        occurrence_id = occurrence_id if occurrence_id is not None else chosen_occurrence
    footprint = open_footprint(folder)
    model = ModelData(footprint=footprint,
                      vulnerability=read_vulnerability(folder, footprint.num_intensity_bins, vulnerability_ids),
                      damage_bins=read_damage_bins(folder), path=folder)
    if catalogue:
        if _find(folder, _stem("events", event_set)):
            model.events = read_events(folder, event_set)
        if _find(folder, _stem("occurrence", occurrence_id)):
            model.occurrence = read_occurrence(folder, occurrence_id)
            model.periods = read_periods(folder, model.occurrence.no_of_periods)
        if _find(folder, "returnperiods"):
            model.return_periods = read_return_periods(folder)
        if _find(folder, "quantile"):
            model.quantiles = read_quantiles(folder)
        if (folder / "event_rates.csv").is_file():
            model.event_rates = read_event_rates(folder)
    return model
