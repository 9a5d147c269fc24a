"""Read, write, validate and convert the Oasis input files.

The files are those of an Oasis ``input/`` folder: ``items``, ``coverages``,
``fm_programme``, ``fm_policytc``, ``fm_profile`` / ``fm_profile_step``,
``fm_xref``, ``gulsummaryxref``, ``fmsummaryxref``, plus ``ri_layers.json`` and
its ``RI_n/`` folders. Each file exists as ``<name>.bin`` (packed little-endian
records, see :mod:`perilflow.kernel.oasis.dtypes`) or ``<name>.csv`` (a header
line, then one record per line). In memory every file is a numpy structured
array whose fields are the CSV column names.

Where the checks happen:

* :func:`read_table` checks one file on its own: required columns present,
  every cell a number of the right kind that fits its type, and

  - ``items``: item ids are 1..N (any order, no gaps or repeats);
  - ``coverages``: coverage_id equals its position (1, 2, 3, ...), because
    ``coverages.bin`` identifies coverages by position only;
  - ``fm_profile``: profile ids are unique; ``fm_profile_step``: each
    (profile_id, step_id) pair is unique.

* :func:`check_fm_inputs` (used by :func:`read_fm_inputs` and
  :func:`validate_fm_inputs`) checks the references between files of one
  folder: see its docstring.

All problems with a file raise :class:`~perilflow.kernel.oasis.errors.OasisFileError`.
Writers write to a temporary file in the target folder and move it into place
with :func:`os.replace`, so a failed write never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from perilflow.kernel.oasis.dtypes import (
    COVERAGES_BIN_DTYPE,
    FILE_DTYPES,
    FM_PROFILE_FIELDS,
    FM_PROFILE_STEP_DTYPE,
)
from perilflow.kernel.oasis.errors import OasisFileError, row_label

__all__ = [
    "FmInputs",
    "RiPass",
    "atomic_write",
    "check_contiguous_ids",
    "check_fm_inputs",
    "convert",
    "find_table",
    "read_fm_inputs",
    "write_ri_layers",
    "read_fm_profile",
    "read_ri_layers",
    "read_table",
    "validate_fm_inputs",
    "write_bin",
    "write_csv",
]

PathLike = str | os.PathLike

RI_LAYERS_FILE = "ri_layers.json"


# --------------------------------------------------------------------------- locating


def _check_name(name: str) -> np.dtype:
    """Return the layout of file ``name`` or raise ValueError listing the known names."""
    try:
        return FILE_DTYPES[name]
    except KeyError:
        known = ", ".join(sorted(FILE_DTYPES))
        raise ValueError(f"unknown Oasis file name {name!r}; expected one of: {known}") from None


def find_table(path_or_dir: PathLike, name: str) -> Path | None:
    """Locate file ``name``: ``<dir>/<name>.bin``, else ``<dir>/<name>.csv``.

    Parameters
    ----------
    path_or_dir : str or os.PathLike
        A folder to search, or the path of the file itself.
    name : str
        File name without extension, a key of ``FILE_DTYPES``.

    Returns
    -------
    pathlib.Path or None
        The file found, or None if there is none.
    """
    _check_name(name)
    path = Path(path_or_dir)
    if path.is_dir():
        for suffix in (".bin", ".csv"):
            candidate = path / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        return None
    return path if path.is_file() else None


# --------------------------------------------------------------------------- reading


def read_table(path_or_dir: PathLike, name: str, required: bool = True) -> np.ndarray | None:
    """Read one Oasis input file into a structured array.

    Parameters
    ----------
    path_or_dir : str or os.PathLike
        The file (``.bin`` or ``.csv``), or a folder in which ``<name>.bin`` is
        preferred over ``<name>.csv``.
    name : str
        File name without extension, a key of ``FILE_DTYPES`` (e.g. ``"items"``).
    required : bool, default True
        If False, a missing file gives None instead of an error.

    Returns
    -------
    numpy.ndarray or None
        Array of dtype ``FILE_DTYPES[name]``, in file order.

    Raises
    ------
    OasisFileError
        If the file is missing (and required), malformed, or fails the
        single-file checks listed in this module's docstring.

    Notes
    -----
    CSV columns are matched by header name; their order does not matter and
    extra columns are ignored. Integer cells may be written as exact floats
    (``3.0``) but not ``1.5``. Empty lines at the end of a CSV are ignored.
    A CSV read as ``fm_profile`` must not carry step columns (read it with
    :func:`read_fm_profile`, or as ``fm_profile_step``), so that step terms
    are never dropped silently.
    """
    dtype = _check_name(name)
    path = find_table(path_or_dir, name)
    if path is None:
        if not required:
            return None
        raise _not_found(Path(path_or_dir), name)
    suffix = path.suffix.lower()
    if suffix == ".bin":
        array = _read_bin(path, name)
    elif suffix == ".csv":
        array = _read_csv(path, name, dtype)
    else:
        raise OasisFileError(path, f"cannot tell the format from the extension '{path.suffix}'",
                             fix="name the file <name>.bin or <name>.csv.")
    _check_single_file(array, path, name)
    return array


def _not_found(path: Path, name: str) -> OasisFileError:
    """Build the error for a required file that does not exist."""
    if path.is_dir():
        return OasisFileError(path / f"{name}.csv", f"required file not found (looked for {name}.bin "
                              f"and {name}.csv in {path})",
                              fix=f"generate the Oasis input files, or add {name}.csv to that folder.")
    return OasisFileError(path, "required file not found", fix="check the path.")


def _read_bin(path: Path, name: str) -> np.ndarray:
    """Read a packed little-endian ``.bin`` file (``coverages.bin`` holds tiv values only)."""
    record = COVERAGES_BIN_DTYPE if name == "coverages" else FILE_DTYPES[name]
    size = path.stat().st_size
    if size % record.itemsize:
        raise OasisFileError(
            path,
            f"file size {size} bytes is not a multiple of the {record.itemsize}-byte {name} record",
            fix=f"the file is truncated or is not a {name} file; regenerate it, e.g. from the CSV "
            "with perilflow.kernel.oasis.files.convert().",
        )
    data = np.fromfile(path, dtype=record)
    if name != "coverages":
        return data
    coverages = np.empty(len(data), dtype=FILE_DTYPES["coverages"])
    coverages["coverage_id"] = np.arange(1, len(data) + 1)
    coverages["tiv"] = data
    return coverages


def _read_header(path: Path) -> list[str]:
    """Return the CSV header names, stripped of spaces (and of a UTF-8 byte-order mark)."""
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise OasisFileError(path, "the file is empty",
                             fix="write a header line with the column names, then the data.") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise OasisFileError(path, f"cannot read the header line ({exc})",
                             fix="save the file as plain UTF-8 CSV.") from None
    return [str(column).strip() for column in header.columns]


def _read_csv(path: Path, name: str, dtype: np.dtype) -> np.ndarray:
    """Parse a CSV file into ``dtype``, checking every cell (vectorised, no per-row loop)."""
    header = _read_header(path)
    if name == "fm_profile" and "step_id" in header:
        raise OasisFileError(
            path,
            "this fm_profile file carries step columns (step_id, trigger_start, ...), "
            "which the plain fm_profile layout would drop",
            fix="read it with read_fm_profile(), or as 'fm_profile_step' "
            "(and convert it to fm_profile_step.bin, not fm_profile.bin).",
        )
    wanted = dtype.names
    for column in wanted:
        count = header.count(column)
        if count == 0:
            raise OasisFileError(path, f"missing column '{column}'", column=column,
                                 fix=_missing_column_fix(column, header, wanted))
        if count > 1:
            raise OasisFileError(path, f"column '{column}' appears {count} times in the header",
                                 column=column, fix="keep one column of that name.")
    try:
        frame = pd.read_csv(
            path,
            usecols=lambda column: column.strip() in wanted,
            encoding="utf-8-sig",
            engine="c",
            low_memory=False,
            skipinitialspace=True,
            skip_blank_lines=False,  # keep positions equal to file rows, for error messages
            keep_default_na=False,  # only an empty cell is missing; "NA" is reported as text
            na_values=[""],
        )
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise OasisFileError(
            path, f"cannot parse the file ({exc})",
            fix="every line must have as many comma-separated cells as the header.",
        ) from None
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = _drop_trailing_empty_rows(frame, path)
    out = np.empty(len(frame), dtype=dtype)
    for column in wanted:
        out[column] = _column_to_dtype(frame[column], dtype.fields[column][0], path, column)
    return out


def _missing_column_fix(column: str, header: list[str], wanted: tuple[str, ...]) -> str:
    """Explain which header the file needs, pointing out a near miss in letter case."""
    same_letters = [found for found in header if found.lower() == column.lower()]
    hint = f" (found '{same_letters[0]}': names are case-sensitive)" if same_letters else ""
    return f"add a '{column}' column{hint}. The header must contain: {','.join(wanted)}."


def _drop_trailing_empty_rows(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop empty lines at the end of a CSV; an empty line before data is an error."""
    empty = frame.isna().all(axis=1).to_numpy()
    if not empty.any():
        return frame
    filled = np.flatnonzero(~empty)
    keep = int(filled[-1]) + 1 if len(filled) else 0
    inner = np.flatnonzero(empty[:keep])
    if len(inner):
        raise OasisFileError(path, "the row is empty", row=int(inner[0]) + 1,
                             fix="delete the empty line(s) between data rows.")
    return frame.iloc[:keep]


def _show(value) -> str:
    """Format a parsed cell for an error message (``3`` rather than ``3.0``)."""
    if isinstance(value, (float, np.floating)) and abs(value) < 1e15 and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _raise_at(mask: np.ndarray, path: Path, column: str, problem: Callable[[int], str], fix: str) -> None:
    """Raise for the first True in ``mask`` (0-based positions), counting the other bad rows."""
    bad = np.flatnonzero(mask)
    if not len(bad):
        return
    first = int(bad[0])
    more = f" (and {len(bad) - 1} more like it)" if len(bad) > 1 else ""
    raise OasisFileError(path, problem(first) + more, row=first + 1, column=column, fix=fix)


def _column_to_dtype(column: pd.Series, target: np.dtype, path: Path, name: str) -> np.ndarray:
    """Convert one parsed CSV column to ``target``, raising for text, gaps, fractions or overflow.

    Parameters
    ----------
    column : pandas.Series
        The column as pandas parsed it (int, float, bool or object dtype).
    target : numpy.dtype
        Scalar type of the field (``<i4``, ``<u4`` or ``<f4``).
    path : pathlib.Path
        The file, for error messages.
    name : str
        The column name, for error messages.

    Returns
    -------
    numpy.ndarray
        1-d array of ``target``.
    """
    raw = column.to_numpy()
    if raw.dtype.kind == "b":  # pandas turns an all-True/False column into bools
        _raise_at(np.ones(len(raw), bool), path, name, lambda i: f"'{raw[i]}' is not a number",
                  fix="write a number in this cell.")
    if raw.dtype.kind not in "iuf":
        numeric = pd.to_numeric(column, errors="coerce")
        text = (numeric.isna() & column.notna()).to_numpy()
        _raise_at(text, path, name, lambda i: f"{str(raw[i])!r} is not a number",
                  fix="write a number in this cell (no text, units or thousands separators).")
        values = numeric.to_numpy()
    else:
        values = raw
    if values.dtype.kind == "f":
        _raise_at(np.isnan(values), path, name, lambda i: "the cell is empty",
                  fix="write a number in this cell.")
    if target.kind in "iu":
        return _to_integer(values, target, path, name)
    return _to_float(values, target, path, name)


def _to_integer(values: np.ndarray, target: np.dtype, path: Path, name: str) -> np.ndarray:
    """Cast numbers to an integer type, rejecting fractions and values out of range."""
    if values.dtype.kind == "f":
        fractional = ~np.isfinite(values) | (values != np.trunc(values))
        _raise_at(fractional, path, name, lambda i: f"{_show(values[i])} is not a whole number",
                  fix="this column holds integer ids; write a whole number.")
    info = np.iinfo(target)
    outside = (values < info.min) | (values > info.max)
    _raise_at(outside, path, name,
              lambda i: f"{_show(values[i])} does not fit in {target.name} ({info.min} to {info.max})",
              fix="use a smaller id.")
    return values.astype(target)


def _to_float(values: np.ndarray, target: np.dtype, path: Path, name: str) -> np.ndarray:
    """Cast numbers to float32, rejecting infinities and values beyond the float32 range."""
    if values.dtype.kind == "f":
        _raise_at(~np.isfinite(values), path, name, lambda i: f"{_show(values[i])} is not a finite number",
                  fix="write a finite number.")
    with np.errstate(over="ignore"):
        out = values.astype(target)
    _raise_at(~np.isfinite(out), path, name,
              lambda i: f"{_show(values[i])} is too large for {target.name} (max {np.finfo(target).max:g})",
              fix="write a smaller amount.")
    return out


# --------------------------------------------------------------------------- single-file checks


def check_contiguous_ids(ids: np.ndarray, path: PathLike, column: str, *, ordered: bool = False) -> None:
    """Check that ``ids`` are the numbers 1..N (N = len(ids)) with no gaps or repeats.

    Parameters
    ----------
    ids : numpy.ndarray
        1-d integer array, in file order.
    path : str or os.PathLike
        The file the ids come from, for the error message.
    column : str
        The column name, for the error message.
    ordered : bool, default False
        If True, also require ``ids[k] == k + 1`` (id equals position).

    Raises
    ------
    OasisFileError
        Naming the first offending row.
    """
    path = Path(path)
    count = len(ids)
    fix = (f"renumber {column} as 1, 2, 3, ... in file order (and update the files that refer to it)."
           if ordered else
           f"renumber {column} as 1..N without gaps or repeats (and update the files that refer to it).")
    if ordered:
        _raise_at(ids != np.arange(1, count + 1), path, column,
                  lambda i: f"{column} {ids[i]} should be {i + 1}: ids must equal their position", fix=fix)
        return
    _raise_at((ids < 1) | (ids > count), path, column,
              lambda i: f"{column} {ids[i]} is outside 1..{count} (the file has {count} rows)", fix=fix)
    duplicate = _first_duplicate(ids.astype(np.int64))
    if duplicate is not None:
        row, first = duplicate
        raise OasisFileError(path, f"{column} {ids[row]} repeats the id of {row_label(path, first + 1)}",
                             row=row + 1, column=column, fix=fix)


def _first_duplicate(keys: np.ndarray) -> tuple[int, int] | None:
    """Return (position, position of its first occurrence) of the earliest repeated key, or None."""
    if len(keys) < 2:
        return None
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if not len(repeated):
        return None
    later = order[repeated]
    row = int(later.min())
    first = int(order[np.searchsorted(ordered, keys[row])])
    return row, first


def _check_single_file(array: np.ndarray, path: Path, name: str) -> None:
    """Run the checks that need only this file (see the module docstring)."""
    if name == "items":
        check_contiguous_ids(array["item_id"], path, "item_id")
    elif name == "coverages":
        check_contiguous_ids(array["coverage_id"], path, "coverage_id", ordered=True)
    elif name == "fm_profile":
        duplicate = _first_duplicate(array["profile_id"].astype(np.int64))
        if duplicate is not None:
            row, first = duplicate
            raise OasisFileError(path, f"profile_id {array['profile_id'][row]} is already defined on "
                                 f"{row_label(path, first + 1)}", row=row + 1, column="profile_id",
                                 fix="give each profile a unique profile_id.")
    elif name == "fm_profile_step":
        key = (array["profile_id"].astype(np.int64) << 32) | array["step_id"].astype(np.int64) & 0xFFFFFFFF
        duplicate = _first_duplicate(key)
        if duplicate is not None:
            row, first = duplicate
            raise OasisFileError(path, f"profile_id {array['profile_id'][row]} step_id "
                                 f"{array['step_id'][row]} is already defined on {row_label(path, first + 1)}",
                                 row=row + 1, column="step_id",
                                 fix="give each step of a profile a unique step_id.")


# --------------------------------------------------------------------------- fm_profile


def _locate_fm_profile(input_dir: Path) -> tuple[Path, str]:
    """Find the profile file of a folder; return it with the layout name to read it as."""
    for name in ("fm_profile_step", "fm_profile"):
        path = find_table(input_dir, name)
        if path is None:
            continue
        if name == "fm_profile" and path.suffix.lower() == ".csv" and "step_id" in _read_header(path):
            return path, "fm_profile_step"
        return path, name
    raise OasisFileError(input_dir / "fm_profile.csv", "no profile file found (looked for fm_profile_step "
                         f"and fm_profile, .bin or .csv, in {input_dir})",
                         fix="generate the Oasis FM input files into that folder.")


def read_fm_profile(input_dir: PathLike) -> tuple[np.ndarray, bool]:
    """Read the financial-terms profiles of a folder, stepped or not.

    Looks for ``fm_profile_step.bin``, ``fm_profile_step.csv``,
    ``fm_profile.bin``, ``fm_profile.csv`` in that order. An ``fm_profile.csv``
    whose header contains ``step_id`` is read as stepped (the Oasis validation
    suites contain such files).

    Parameters
    ----------
    input_dir : str or os.PathLike
        Folder holding the FM input files.

    Returns
    -------
    profiles : numpy.ndarray
        Array of ``FM_PROFILE_STEP_DTYPE``. For a non-stepped file the step
        fields are 0 and ``step_id`` is 1.
    stepped : bool
        True if the file had step columns.
    """
    path, layout = _locate_fm_profile(Path(input_dir))
    return _read_profile_file(path, layout)


def _read_profile_file(path: Path, layout: str) -> tuple[np.ndarray, bool]:
    """Read a located profile file and widen it to the fm_profile_step layout if needed."""
    array = read_table(path, layout)
    if layout == "fm_profile_step":
        return array, True
    return _widen_profile(array), False


def _widen_profile(plain: np.ndarray) -> np.ndarray:
    """Copy an fm_profile array into the fm_profile_step layout (step_id 1, other step fields 0)."""
    wide = np.zeros(len(plain), dtype=FM_PROFILE_STEP_DTYPE)
    for name in FM_PROFILE_FIELDS:
        wide[name] = plain[name]
    wide["step_id"] = 1
    return wide


# --------------------------------------------------------------------------- cross-file checks


@dataclass
class FmInputs:
    """The FM input files of one folder (an IL input folder or an ``RI_n`` folder)."""

    directory: Path
    fm_programme: np.ndarray
    fm_policytc: np.ndarray
    fm_profile: np.ndarray  # always in the fm_profile_step layout
    stepped: bool
    fm_xref: np.ndarray
    items: np.ndarray | None = None  # absent in RI_n folders
    coverages: np.ndarray | None = None
    paths: dict[str, Path] = field(default_factory=dict)  # file name -> file read


def read_fm_inputs(input_dir: PathLike, *, validate: bool = True) -> FmInputs:
    """Read the FM files of a folder and (by default) check the references between them.

    Parameters
    ----------
    input_dir : str or os.PathLike
        Folder with fm_programme, fm_policytc, fm_profile[_step] and fm_xref;
        items and coverages are read too when present.
    validate : bool, default True
        Run :func:`check_fm_inputs` on the result.

    Returns
    -------
    FmInputs
    """
    directory = Path(input_dir)
    if not directory.is_dir():
        raise OasisFileError(directory, "folder not found", fix="check the input folder path.")
    paths: dict[str, Path] = {}
    arrays: dict[str, np.ndarray | None] = {}
    for name in ("fm_programme", "fm_policytc", "fm_xref", "items", "coverages"):
        required = name.startswith("fm_")
        path = find_table(directory, name)
        if path is None and required:
            raise _not_found(directory, name)
        arrays[name] = read_table(path, name) if path is not None else None
        if path is not None:
            paths[name] = path
    profile_path, layout = _locate_fm_profile(directory)
    paths["fm_profile"] = profile_path
    profile, stepped = _read_profile_file(profile_path, layout)
    inputs = FmInputs(directory=directory, fm_programme=arrays["fm_programme"],
                      fm_policytc=arrays["fm_policytc"], fm_profile=profile, stepped=stepped,
                      fm_xref=arrays["fm_xref"], items=arrays["items"], coverages=arrays["coverages"],
                      paths=paths)
    if validate:
        check_fm_inputs(inputs)
    return inputs


def validate_fm_inputs(input_dir: PathLike) -> None:
    """Read and check the FM input files of a folder; raise OasisFileError on the first problem."""
    read_fm_inputs(input_dir, validate=True)


def _not_in(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries of ``values`` that are not in ``allowed``."""
    return ~np.isin(values, allowed)


def check_fm_inputs(inputs: FmInputs) -> None:
    """Check the references between the FM files of one folder.

    Checks, each naming the first offending row of the referring file:

    * every ``items.coverage_id`` is a coverage in ``coverages``;
    * every ``from_agg_id`` of the lowest ``fm_programme`` level is an item id
      (only when ``items`` is present, i.e. not in ``RI_n`` folders);
    * every ``fm_policytc.level_id`` is a level of ``fm_programme``;
    * every ``fm_policytc.profile_id`` is defined in fm_profile[_step];
    * every ``fm_xref.agg_id`` is a node of ``fm_programme``: a ``from_agg_id``
      of the lowest level (outputs allocated back to items, the usual case) or
      a ``to_agg_id`` of the top level (outputs at the top, allocation rule 0);
    * every ``fm_xref.layer_id`` is a layer of ``fm_policytc``.

    Parameters
    ----------
    inputs : FmInputs
        Arrays as returned by :func:`read_fm_inputs`.

    Raises
    ------
    OasisFileError
    """
    def paths(name: str) -> Path:
        """The file ``name`` was read from (or its default name, for hand-built FmInputs)."""
        return inputs.paths.get(name) or inputs.directory / f"{name}.csv"

    programme, policytc, xref = inputs.fm_programme, inputs.fm_policytc, inputs.fm_xref
    if inputs.items is not None and inputs.coverages is not None:
        _raise_at(_not_in(inputs.items["coverage_id"], inputs.coverages["coverage_id"]),
                  paths("items"), "coverage_id",
                  lambda i: f"coverage_id {inputs.items['coverage_id'][i]} is not in "
                  f"{paths('coverages').name}",
                  fix="add the coverage to coverages, or correct the item's coverage_id.")
    levels = np.unique(programme["level_id"])
    at_lowest = programme["level_id"] == (levels[0] if len(levels) else 0)
    at_top = programme["level_id"] == (levels[-1] if len(levels) else 0)
    lowest = programme["from_agg_id"][at_lowest]
    top = programme["to_agg_id"][at_top]
    if inputs.items is not None:
        _raise_at(at_lowest & _not_in(programme["from_agg_id"], inputs.items["item_id"]),
                  paths("fm_programme"), "from_agg_id",
                  lambda i: f"from_agg_id {programme['from_agg_id'][i]} at the lowest level "
                  f"({levels[0]}) is not an item_id of {paths('items').name}",
                  fix="at the first level, from_agg_id must be an item_id.")
    _raise_at(_not_in(policytc["level_id"], levels), paths("fm_policytc"), "level_id",
              lambda i: f"level_id {policytc['level_id'][i]} is not a level of {paths('fm_programme').name} "
              f"(levels: {_short_list(levels)})",
              fix="use a level that fm_programme defines, or add that level to fm_programme.")
    profile_ids = np.unique(inputs.fm_profile["profile_id"])
    _raise_at(_not_in(policytc["profile_id"], profile_ids), paths("fm_policytc"), "profile_id",
              lambda i: f"profile_id {policytc['profile_id'][i]} is not defined in "
              f"{paths('fm_profile').name}",
              fix="add the profile to fm_profile, or correct the profile_id.")
    nodes = np.union1d(lowest, top)
    _raise_at(_not_in(xref["agg_id"], nodes), paths("fm_xref"), "agg_id",
              lambda i: f"agg_id {xref['agg_id'][i]} is neither a from_agg_id of the lowest level nor a "
              f"to_agg_id of the top level of {paths('fm_programme').name}",
              fix="fm_xref must refer to items (or to top-level nodes); regenerate fm_xref.")
    layers = np.unique(policytc["layer_id"])
    _raise_at(_not_in(xref["layer_id"], layers), paths("fm_xref"), "layer_id",
              lambda i: f"layer_id {xref['layer_id'][i]} is not a layer of {paths('fm_policytc').name} "
              f"(layers: {_short_list(layers)})",
              fix="use a layer that fm_policytc defines.")


def _short_list(values: np.ndarray, limit: int = 10) -> str:
    """Format at most ``limit`` values for an error message."""
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


# --------------------------------------------------------------------------- reinsurance


@dataclass(frozen=True)
class RiPass:
    """One reinsurance pass of ``ri_layers.json`` with its resolved ``RI_n`` folder."""

    number: int
    inuring_priority: int
    risk_level: str
    directory: Path


def read_ri_layers(input_dir: PathLike) -> list[RiPass]:
    """Read ``ri_layers.json`` and locate each pass's folder.

    The ``directory`` values are usually absolute paths from the machine that
    generated the files, so each is resolved relative to ``input_dir``, trying
    in turn:

    1. ``input_dir / directory`` if ``directory`` is relative and stays inside
       ``input_dir``;
    2. ``input_dir / basename(directory)`` (``/`` and ``\\`` both separate);
    3. ``input_dir / f"RI_{number}"``.

    Parameters
    ----------
    input_dir : str or os.PathLike
        Folder holding ``ri_layers.json``.

    Returns
    -------
    list of RiPass
        Sorted by (inuring_priority, number); empty if there is no ri_layers.json.

    Raises
    ------
    OasisFileError
        If the json is invalid, an entry lacks a field, or no folder exists.
    """
    directory = Path(input_dir)
    path = directory / RI_LAYERS_FILE
    if not path.is_file():
        return []
    try:
        layers = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OasisFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                             fix="correct the JSON syntax.") from None
    if not isinstance(layers, dict):
        raise OasisFileError(path, "expected a JSON object mapping pass numbers to layers",
                             fix='write {"1": {"inuring_priority": 1, "risk_level": "LOC", '
                             '"directory": "RI_1"}, ...}.')
    passes = [_ri_pass(path, directory, key, entry) for key, entry in layers.items()]
    return sorted(passes, key=lambda ri: (ri.inuring_priority, ri.number))


def write_ri_layers(input_dir: PathLike, passes: list[RiPass]) -> Path:
    """Write ``ri_layers.json`` for ``passes``, with each directory relative to ``input_dir``.

    Relative directories keep an input folder movable between machines; the
    reference writes absolute ones, which :func:`read_ri_layers` also accepts.
    """
    directory = Path(input_dir)
    layers = {}
    for ri in sorted(passes, key=lambda p: p.number):
        folder = Path(ri.directory)
        try:
            relative = folder.resolve().relative_to(directory.resolve()).as_posix()
        except ValueError:
            raise OasisFileError(directory / RI_LAYERS_FILE,
                                 f"pass {ri.number}: folder {folder} is outside {directory}",
                                 fix="create the RI_n folders inside the input folder.") from None
        layers[str(ri.number)] = {"inuring_priority": ri.inuring_priority, "risk_level": ri.risk_level,
                                  "directory": relative}
    text = json.dumps(layers, indent=4) + "\n"
    return atomic_write(directory / RI_LAYERS_FILE, lambda handle: handle.write(text), binary=False)


def _ri_pass(path: Path, input_dir: Path, key: str, entry) -> RiPass:
    """Validate one ri_layers.json entry and resolve its folder."""
    if not re.fullmatch(r"\d+", key.strip()):
        raise OasisFileError(path, f"key '{key}' is not a pass number", fix='use "1", "2", ... as keys.')
    number = int(key)
    if not isinstance(entry, dict):
        raise OasisFileError(path, f"layer '{key}' is not an object",
                             fix="give inuring_priority, risk_level and directory.")
    priority = entry.get("inuring_priority")
    if isinstance(priority, str) and re.fullmatch(r"\s*\d+\s*", priority):
        priority = int(priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise OasisFileError(path, f"layer '{key}': inuring_priority {priority!r} is not an integer",
                             fix="give inuring_priority as a whole number.")
    risk_level = entry.get("risk_level", "")
    if not isinstance(risk_level, str):
        raise OasisFileError(path, f"layer '{key}': risk_level {risk_level!r} is not a string",
                             fix='use an OED risk level such as "LOC", "POL", "ACC" or "SEL".')
    raw_directory = entry.get("directory") or ""
    if not isinstance(raw_directory, str):
        raise OasisFileError(path, f"layer '{key}': directory {raw_directory!r} is not a string",
                             fix="give the folder name, e.g. \"RI_1\".")
    candidates = _ri_directory_candidates(input_dir, number, raw_directory)
    for candidate in candidates:
        if candidate.is_dir():
            return RiPass(number, priority, risk_level, candidate)
    tried = ", ".join(str(c) for c in candidates)
    raise OasisFileError(path, f"layer '{key}': folder for directory {raw_directory!r} not found "
                         f"(tried {tried})",
                         fix=f"put the pass's files in {input_dir / f'RI_{number}'}, or correct 'directory'.")


def _ri_directory_candidates(input_dir: Path, number: int, directory: str) -> list[Path]:
    """List the folders to try for one pass, most specific first (see read_ri_layers)."""
    candidates = []
    if directory:
        relative = Path(directory)
        normalised = os.path.normpath(directory)
        if not relative.is_absolute() and normalised != ".." and not normalised.startswith(".." + os.sep):
            candidates.append(input_dir / normalised)
        basename = re.split(r"[\\/]", directory.rstrip("\\/"))[-1]
        if basename and basename not in (".", ".."):
            candidates.append(input_dir / basename)
    candidates.append(input_dir / f"RI_{number}")
    return list(dict.fromkeys(candidates))


# --------------------------------------------------------------------------- writing


def atomic_write(path: PathLike, write: Callable[[IO], None], *, binary: bool) -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place.

    If ``write`` raises, the temporary file is removed and ``path`` is left as it
    was. The temporary file is created with mode 0o666 minus the umask, like a
    normal file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding, newline=None if binary else "") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _coerce(array: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Cast ``array`` to layout ``name``: same field names (any order), values that fit.

    Any integer field converts to any integer field, and any number to a float
    field. Raises TypeError if the field names differ or a field would convert
    from float (or text) to integer, and OasisFileError if an integer does not
    fit its type or a float is not finite.
    """
    target = _check_name(name)
    names = array.dtype.names
    if names is None:
        raise TypeError(f"cannot write {path}: expected a structured array with fields "
                        f"{', '.join(target.names)}, got dtype {array.dtype}")
    missing = [n for n in target.names if n not in names]
    extra = [n for n in names if n not in target.names]
    if missing or extra:
        raise TypeError(f"cannot write {path} as {name}: fields missing {missing}, unexpected {extra}; "
                        f"expected {', '.join(target.names)}")
    out = np.empty(array.shape, dtype=target)
    for field_name in target.names:
        out[field_name] = _cast_field(array[field_name], target.fields[field_name][0], path, field_name)
    return out


def _cast_field(values: np.ndarray, kind: np.dtype, path: Path, field_name: str) -> np.ndarray:
    """Cast one field for writing; see _coerce for the rules."""
    allowed = "biu" if kind.kind in "iu" else "biuf"
    if values.dtype.kind not in allowed:
        raise TypeError(f"cannot write {path}: field '{field_name}' has type {values.dtype}, "
                        f"which does not convert safely to {kind.name}")
    if kind.kind in "iu":
        info = np.iinfo(kind)
        _raise_at((values < info.min) | (values > info.max), path, field_name,
                  lambda i: f"{values[i]} does not fit in {kind.name} ({info.min} to {info.max})",
                  fix="use smaller ids.")
        return values.astype(kind)
    with np.errstate(over="ignore"):
        out = values.astype(kind)
    _raise_at(~np.isfinite(out), path, field_name,
              lambda i: f"{values[i]} is not a finite {kind.name} number",
              fix="replace NaN, infinity or out-of-range values before writing.")
    return out


def write_csv(path: PathLike, array: np.ndarray, name: str | None = None) -> Path:
    """Write a structured array as CSV, header = field names, atomically.

    float32 values are written in their shortest exact form (e.g. ``0.1``,
    ``1e+07``), so reading the file back gives the same float32 bits.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : numpy.ndarray
        Structured array. Written as is if ``name`` is None.
    name : str, optional
        If given, ``array`` is first cast to ``FILE_DTYPES[name]``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    if name is not None:
        array = _coerce(array, name, path)
    elif array.dtype.names is None:
        raise TypeError(f"cannot write {path}: expected a structured array, got dtype {array.dtype}")
    frame = pd.DataFrame({column: array[column] for column in array.dtype.names})
    return atomic_write(path, lambda handle: frame.to_csv(handle, index=False, lineterminator="\n"),
                         binary=False)


def write_bin(path: PathLike, array: np.ndarray, name: str) -> Path:
    """Write an array as an Oasis ``.bin`` file (packed little-endian records), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : numpy.ndarray
        Structured array with the fields of ``FILE_DTYPES[name]`` (any order).
    name : str
        File name without extension. For ``coverages`` only the tiv values are
        written, so coverage_id must be 1, 2, 3, ... in order.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    records = _coerce(array, name, path)
    if name == "coverages":
        check_contiguous_ids(records["coverage_id"], path, "coverage_id", ordered=True)
        records = np.ascontiguousarray(records["tiv"], dtype=COVERAGES_BIN_DTYPE)
    else:
        records = np.ascontiguousarray(records)
    return atomic_write(path, lambda handle: handle.write(records.tobytes()), binary=True)


# --------------------------------------------------------------------------- conversion


def convert(src: PathLike, dst: PathLike, name: str | None = None) -> Path:
    """Convert an Oasis input file between CSV and .bin, by the extensions of ``src`` and ``dst``.

    Parameters
    ----------
    src, dst : str or os.PathLike
        Source and destination files, each ending in ``.csv`` or ``.bin``.
    name : str, optional
        File layout, a key of ``FILE_DTYPES``; by default the stem of ``src``
        (``items.csv`` -> ``items``).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    src, dst = Path(src), Path(dst)
    name = name or src.stem
    _check_name(name)
    if not src.is_file():
        raise OasisFileError(src, "file not found", fix="check the path.")
    array = read_table(src, name)
    suffix = dst.suffix.lower()
    if suffix == ".bin":
        return write_bin(dst, array, name)
    if suffix == ".csv":
        return write_csv(dst, array, name)
    raise ValueError(f"cannot tell the output format of {dst}: use a .csv or .bin extension")

