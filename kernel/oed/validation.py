"""Checks on raw OED exposure files, reported as problems that name file, row, column and fix.

The checks run on the files as read (every cell a string, or the parquet file's own
types), before ods-tools converts them, so that a bad cell can still be pointed at.
:func:`validate_exposure` returns every :class:`Problem` found; :func:`raise_for_problems`
raises :class:`OedValidationError` (a ``ValueError``) when at least one is fatal.

Fatal problems (the files cannot be turned into Oasis inputs):

* an empty file (no header, or no data row);
* a required column missing (OED "Property field status" R, e.g. ``LocPerilsCovered``);
* text (or a fraction in an integer field) in a numeric OED column;
* an unknown peril code in a peril column (``LocPerilsCovered``, ``PolPeril``, ...);
* the same ``LocNumber`` twice within one (``PortNumber``, ``AccNumber``) with different exposure
  values (TIVs, perils covered, address, ...), unless ``allow_duplicate_locations`` (the reference
  then silently uses the first row's values). Repeating a location only to give it more site
  terms (one row per ``CondTag`` or ``LocPeril``, as the reference's validation suites do) is
  reported as a warning: the reference reads such rows as one location;
* a location whose (``PortNumber``, ``AccNumber``) is not in the account file, or whose
  ``CondTag`` is not defined for its account (the reference rejects both).

Warnings (reported, not fatal): a blank required value, a number outside the OED valid range
(for example a negative TIV), and a location repeated with the same exposure values.

Row numbers count data rows from 1; in a CSV file row N is on line N + 1 (line 1 is
the header), which is also what a spreadsheet shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "OED_FILE_TYPES",
    "PERIL_FIELDS",
    "OedValidationError",
    "Problem",
    "raise_for_problems",
    "validate_exposure",
    "validate_frame",
]

#: Our name of each OED file -> the file type in the OED schema.
OED_FILE_TYPES = {"location": "Loc", "account": "Acc", "ri_info": "ReinsInfo", "ri_scope": "ReinsScope"}

#: OED fields (lower case) holding ';'-separated peril codes.
PERIL_FIELDS = frozenset({"locperilscovered", "locperil", "polperilscovered", "polperil", "condperil", "accperil",
                          "reinsperil"})

#: How many bad rows of one (file, column, check) are listed one by one before a summary line.
MAX_ROWS_LISTED = 5

_NUMERIC_DTYPES = {"Int8", "Int16", "Int32", "Int64", "float64"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an OED file.

    Attributes
    ----------
    file : str
        The file (its path, or a label for a DataFrame given in memory).
    row : int or None
        1-based data row, or None when the problem is about the whole file or column.
    column : str or None
        The column, as spelled in the file.
    message : str
        What is wrong.
    fix : str
        How to correct it.
    fatal : bool
        True if Oasis inputs cannot be generated until it is fixed.
    """

    file: str
    row: int | None
    column: str | None
    message: str
    fix: str
    fatal: bool = True

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row} (line {self.row + 1})" if self.file.lower().endswith(".csv")
                         else f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        kind = "" if self.fatal else "warning: "
        return f"{', '.join(where)}: {kind}{self.message.rstrip('.')}. Fix: {self.fix}"


class OedValidationError(ValueError):
    """The OED exposure has fatal problems; ``problems`` lists all problems found (fatal first)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: not p.fatal)
        fatal = [p for p in self.problems if p.fatal]
        shown = fatal[:20]
        lines = [f"{len(fatal)} problem(s) stop the OED exposure from being used:"]
        lines += [f"  - {p}" for p in shown]
        if len(fatal) > len(shown):
            lines.append(f"  ... and {len(fatal) - len(shown)} more")
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (OedValidationError, (self.problems,))


def raise_for_problems(problems: list[Problem]) -> list[Problem]:
    """Raise :class:`OedValidationError` if any problem is fatal; otherwise return the (warning) problems."""
    if any(p.fatal for p in problems):
        raise OedValidationError(problems)
    return problems


# --------------------------------------------------------------------------- one file


def validate_frame(kind: str, frame: pd.DataFrame | None, label: str, schema, *,
                   allow_duplicate_locations: bool = False) -> list[Problem]:
    """Check one raw OED file on its own.

    Parameters
    ----------
    kind : str
        ``"location"``, ``"account"``, ``"ri_info"`` or ``"ri_scope"``.
    frame : pandas.DataFrame or None
        The file as read: CSV cells as strings (blank = ``""`` or NaN), parquet as stored.
        None means the file had no header at all.
    label : str
        The file's name for messages.
    schema : ods_tools.oed.OedSchema
        The OED schema (field types, required fields, valid ranges, perils).
    allow_duplicate_locations : bool, default False
        Report a location repeated with different exposure values as a warning instead of a
        fatal problem (the reference then uses the first row's values).

    Returns
    -------
    list of Problem
    """
    if frame is None or len(frame.columns) == 0:
        return [Problem(label, None, None, "the file is empty (no header line)",
                        f"write the OED {kind} file with a header line of OED column names, then one row per record.")]
    if len(frame) == 0:
        return [Problem(label, None, None, "the file has a header but no data rows",
                        f"add at least one {kind} row, or leave the file out.")]
    fields = schema.schema["input_fields"][OED_FILE_TYPES[kind]]
    columns = _column_fields(frame.columns, fields)
    problems = _missing_required(kind, columns, fields, label)
    for column, field in columns.items():
        values = frame[column]
        if field is None:
            continue
        blank = None
        if field["pd_dtype"] in _NUMERIC_DTYPES:
            found, blank = _numeric_checks(values, column, field, label)
            problems += found
        elif field["Input Field Name"].lower() in PERIL_FIELDS:
            problems += _peril_problems(values, column, schema, label)
        if field.get("Property field status") == "R":
            blank = _blank(values) if blank is None else blank
            problems += _rows(blank, lambda i, column=column: Problem(
                label, i + 1, column, "the value is blank but the field is required", "fill in a value.",
                fatal=False))
    if kind == "location":
        problems += _duplicate_locations(frame, columns, label, not allow_duplicate_locations)
    return problems


def _column_fields(columns: Iterable, fields: Mapping) -> dict[str, dict | None]:
    """Map each column of a file to its OED field (case-insensitive), or None if it is not an OED field."""
    return {column: fields.get(str(column).strip().lower()) for column in columns}


def _missing_required(kind: str, columns: Mapping, fields: Mapping, label: str) -> list[Problem]:
    """Required OED fields that no column of the file provides."""
    present = {str(c).strip().lower() for c in columns}
    problems = []
    for key, field in fields.items():
        if field.get("Property field status") == "R" and key not in present:
            name = field["Input Field Name"]
            problems.append(Problem(label, None, name, f"required column '{name}' is missing",
                                    f"add a '{name}' column to the {kind} file ({field['Type & Description']})."))
    return problems


def _blank(values: pd.Series) -> np.ndarray:
    """True where a cell is empty (NaN, None or only spaces)."""
    cells = _text_cells(values)
    if cells is not None and _mostly_distinct(cells):
        return np.fromiter((not text.strip() for text in cells), dtype=bool, count=len(cells))
    if cells is not None:  # each distinct text stripped once
        codes, uniques = pd.factorize(cells)
        return np.array([not text.strip() for text in uniques], dtype=bool)[codes]
    missing = values.isna().to_numpy()
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
        text = values.astype("string").str.strip()
        missing |= (text == "").fillna(True).to_numpy(dtype=bool)
    return missing


def _rows(mask: np.ndarray, make, limit: int = MAX_ROWS_LISTED) -> list[Problem]:
    """One problem per True position of ``mask`` (0-based), at most ``limit``, then a summary problem."""
    bad = np.flatnonzero(mask)
    problems = [make(int(i)) for i in bad[:limit]]
    if len(bad) > limit:
        first = problems[0]
        problems.append(Problem(first.file, None, first.column,
                                f"{len(bad) - limit} more rows have the same problem "
                                f"(rows {', '.join(str(int(i) + 1) for i in bad[limit:limit + 10])}"
                                f"{', ...' if len(bad) > limit + 10 else ''})", first.fix, first.fatal))
    return problems


def _text_cells(values: pd.Series) -> np.ndarray | None:
    """The cells as an object array when every one is a str (a CSV file read as text), else None."""
    if values.dtype != object:
        return None
    cells = values.to_numpy()
    return cells if pd.api.types.infer_dtype(cells, skipna=False) in ("string", "empty") else None


def _mostly_distinct(cells: np.ndarray, sample: int = 20_000) -> bool:
    """True when most cells differ (judged on the first ``sample``), so that converting each distinct cell once
    would not pay for finding them."""
    head = cells[:sample]
    return len(head) > 0 and len(pd.unique(head)) > 0.6 * len(head)


def _stripped(values: pd.Series) -> pd.Series:
    """``values.astype("string").fillna("").str.strip()``, each distinct text stripped once."""
    cells = _text_cells(values)
    if cells is None:
        return values.astype("string").fillna("").str.strip()
    if _mostly_distinct(cells):
        return pd.Series([text.strip() for text in cells], index=values.index, dtype="string")
    codes, uniques = pd.factorize(cells)
    stripped = np.array([text.strip() for text in uniques] + [""], dtype=object)
    return pd.Series(stripped[codes], index=values.index, dtype="string")


def _parse_numbers(values: pd.Series, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, blank) of a column of str cells: the cells stripped and converted with ``pd.to_numeric``.

    Cells are parsed as they are first; only those that are not a number that way (blanks, text,
    numbers padded with non-ASCII spaces) go through the strip and conversion one by one.
    """
    if _mostly_distinct(cells):
        numbers = np.asarray(pd.to_numeric(cells, errors="coerce"), dtype="float64").copy()
    else:  # repeated cells (codes, types, round amounts): convert each distinct cell once
        codes, uniques = pd.factorize(cells)
        numbers = np.asarray(pd.to_numeric(uniques, errors="coerce"), dtype="float64")[codes]
    blank = cells == ""
    failed = np.flatnonzero(np.isnan(numbers) & ~blank)
    if len(failed):
        cleaned = values.iloc[failed].astype("string").str.strip()
        blank[failed] = (cleaned == "").fillna(True).to_numpy(dtype=bool)
        numbers[failed] = pd.to_numeric(cleaned, errors="coerce").astype("float64").to_numpy()
    return numbers, blank


def _numeric_problems(values: pd.Series, column: str, field: dict, label: str) -> list[Problem]:
    """Text, fractions in integer fields, and values outside the OED valid range."""
    return _numeric_checks(values, column, field, label)[0]


def _numeric_checks(values: pd.Series, column: str, field: dict, label: str) -> tuple[list[Problem], np.ndarray]:
    """:func:`_numeric_problems`, and the column's blank cells (:func:`_blank`)."""
    name = field["Input Field Name"]
    cells = _text_cells(values)
    if cells is not None:
        number_values, blank = _parse_numbers(values, cells)
        numbers = pd.Series(number_values, index=values.index)
        text = np.isnan(number_values) & ~blank
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        blank = _blank(values)
        numbers = values.astype("float64")
        text = np.zeros(len(values), dtype=bool)
    else:
        blank = _blank(values)
        cleaned = values.astype("string").str.strip()
        numbers = pd.to_numeric(cleaned, errors="coerce").astype("float64")
        text = (numbers.isna().to_numpy() & ~blank)
    raw = values.to_numpy()
    problems = _rows(text, lambda i: Problem(label, i + 1, column, f"'{raw[i]}' is not a number, but {name} is a "
                                             f"numeric OED field ({field['Data Type']})",
                                             "write a plain number (no text, units or thousands separators), "
                                             "or leave the cell empty for the default."))
    number_values = numbers.to_numpy()
    if field["pd_dtype"].startswith("Int"):
        fraction = np.isfinite(number_values) & (number_values != np.trunc(number_values))
        problems += _rows(fraction, lambda i: Problem(label, i + 1, column, f"{raw[i]} is not a whole number, "
                                                      f"but {name} is an integer OED field",
                                                      "write a whole number."))
    ranges = field.get("Valid value range")
    if isinstance(ranges, list) and ranges:
        inside = np.zeros(len(values), dtype=bool)
        for valid in ranges:
            ok = np.ones(len(values), dtype=bool)
            if valid.get("min") is not None:
                ok &= number_values >= valid["min"]
            if valid.get("max") is not None:
                ok &= number_values <= valid["max"]
            if valid.get("enum") is not None:
                ok &= np.isin(number_values, np.asarray(valid["enum"], dtype=float))
            inside |= ok
        outside = np.isfinite(number_values) & ~inside
        problems += _rows(outside, lambda i: Problem(label, i + 1, column, f"{raw[i]} is outside the valid range "
                                                     f"of {name} ({_describe_ranges(ranges)})",
                                                     "correct the value.", fatal=False))
    return problems, blank


def _describe_ranges(ranges: list[dict]) -> str:
    """Human-readable OED valid range, e.g. 'min 0' or 'one of 0, 1, 2'."""
    parts = []
    for valid in ranges:
        bits = []
        if valid.get("min") is not None:
            bits.append(f"min {valid['min']}")
        if valid.get("max") is not None:
            bits.append(f"max {valid['max']}")
        if valid.get("enum") is not None:
            bits.append("one of " + ", ".join(str(v) for v in valid["enum"]))
        parts.append(" ".join(bits))
    return " or ".join(parts)


def _peril_problems(values: pd.Series, column: str, schema, label: str) -> list[Problem]:
    """Peril codes that the OED schema does not know (codes are separated by ';')."""
    valid = set(schema.schema["perils"]["info"])
    text = _stripped(values)
    distinct = pd.unique(text.to_numpy(dtype=object))
    unknown_of = {}
    for cell in distinct:  # one check per distinct cell, not per row
        codes = [code.strip() for code in str(cell).split(";") if code.strip()]
        unknown = [code for code in codes if code not in valid]
        if unknown:
            unknown_of[cell] = unknown
    if not unknown_of:
        return []
    bad = text.isin(list(unknown_of)).to_numpy()
    cells = text.to_numpy(dtype=object)
    return _rows(bad, lambda i: Problem(
        label, i + 1, column, f"unknown peril code(s) {', '.join(repr(c) for c in unknown_of[cells[i]])} "
        f"in '{cells[i]}'",
        "use OED peril codes separated by ';' (e.g. WTC, WSS, QEQ, or groups such as WW1, AA1)."))


def _find(columns: Mapping, field_name: str) -> str | None:
    """The column of a file that holds OED field ``field_name`` (case-insensitive), if any."""
    for column, field in columns.items():
        if field is not None and field["Input Field Name"] == field_name:
            return column
    return None


def _key_text(frame: pd.DataFrame, column: str) -> pd.Series:
    """Identifier column as stripped text (so 1 and '1' compare equal, as they do once loaded)."""
    values = frame[column]
    if _text_cells(values) is not None:
        return _stripped(values)
    if pd.api.types.is_float_dtype(values.dtype):
        as_int = values.dropna()
        if (as_int == np.trunc(as_int)).all():
            values = values.astype("Int64")
    return values.astype("string").fillna("").str.strip()


#: Location columns that may differ between rows of one location: the reference reads a location
#: listed twice in its account as one location (TIVs and attributes from the first row) carrying
#: several sets of site terms, e.g. one row per special condition (CondTag) or per peril (LocPeril).
_TERM_COLUMN = re.compile(r"^(Loc(Min|Max)?Ded|LocDed(Code|Type)|LocLimit|BIWaitingPeriod|BIPOI|CondTag$|LocPeril$"
                          r"|Flexi)", re.IGNORECASE)


def _duplicate_locations(frame: pd.DataFrame, columns: Mapping, label: str, conflicts_fatal: bool = True
                         ) -> list[Problem]:
    """A LocNumber listed twice in one account with different exposure values (fatal unless
    ``conflicts_fatal`` is False), or only different site terms (warning: the rows are read as one
    location with several term rows)."""
    keys = [_find(columns, name) for name in ("PortNumber", "AccNumber", "LocNumber")]
    if None in keys:
        return []
    ids = pd.DataFrame({name: _key_text(frame, column) for name, column in zip(("p", "a", "l"), keys, strict=True)})
    repeated = ids.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return []
    group = ids.groupby(["p", "a", "l"], sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(ids))).groupby(group).transform("min").to_numpy()
    defining = [c for c in frame.columns if c not in keys and not _TERM_COLUMN.match(str(c))]
    values = frame[defining].astype("string").fillna("").apply(lambda col: col.str.strip())
    differs = (values.to_numpy() != values.to_numpy()[first]).any(axis=1) if defining else np.zeros(len(ids), bool)
    conflicting = repeated & differs

    def describe(i: int) -> str:
        return (f"LocNumber '{ids['l'].iat[i]}' appears again in account '{ids['a'].iat[i]}' of portfolio "
                f"'{ids['p'].iat[i]}' (first on row {first[i] + 1})")

    def column_of(i: int) -> str:
        bad = [c for c, v, w in zip(defining, values.iloc[i], values.iloc[first[i]], strict=True) if v != w]
        return ", ".join(bad[:5])

    problems = _rows(conflicting, lambda i: Problem(
        label, i + 1, keys[2], f"{describe(i)} with different exposure values ({column_of(i)})",
        "give each location of an account its own LocNumber; repeat a location only to give it more "
        "site terms (one row per CondTag or LocPeril), with the same TIVs and attributes.", conflicts_fatal))
    problems += _rows(repeated & ~differs, lambda i: Problem(
        label, i + 1, keys[2], f"{describe(i)}; its rows are read as one location with several sets of site terms",
        "nothing to do if this is meant (e.g. one row per CondTag or LocPeril); otherwise remove the duplicate row.",
        fatal=False))
    return problems


# --------------------------------------------------------------------------- across files


def validate_exposure(frames: Mapping[str, tuple[pd.DataFrame | None, str]], schema, *,
                      allow_duplicate_locations: bool = False) -> list[Problem]:
    """Check every OED file given, then the links between location and account.

    Parameters
    ----------
    frames : mapping
        ``kind -> (raw frame or None, label)`` for the files present (see :func:`validate_frame`).
    schema : ods_tools.oed.OedSchema
        The OED schema.
    allow_duplicate_locations : bool, default False
        See :func:`validate_frame`.

    Returns
    -------
    list of Problem
        Every problem found, in file order.
    """
    problems: list[Problem] = []
    for kind, (frame, label) in frames.items():
        problems += validate_frame(kind, frame, label, schema, allow_duplicate_locations=allow_duplicate_locations)
    if any(p.fatal for p in problems):
        return problems  # links are only checked between files that are sound on their own
    if "location" in frames and "account" in frames:
        problems += _location_account_links(frames["location"], frames["account"], schema)
    if ("ri_info" in frames) != ("ri_scope" in frames):
        given, missing = ("ri_info", "ri_scope") if "ri_info" in frames else ("ri_scope", "ri_info")
        problems.append(Problem(frames[given][1], None, None, f"{given} is given without {missing}",
                                f"give both reinsurance files ({given} and {missing}), or neither."))
    return problems


def _location_account_links(location: tuple, account: tuple, schema) -> list[Problem]:
    """Locations must belong to an account of the account file, and their CondTag must be defined there."""
    (loc, loc_label), (acc, acc_label) = location, account
    loc_fields = _column_fields(loc.columns, schema.schema["input_fields"]["Loc"])
    acc_fields = _column_fields(acc.columns, schema.schema["input_fields"]["Acc"])
    loc_keys = [_find(loc_fields, n) for n in ("PortNumber", "AccNumber")]
    acc_keys = [_find(acc_fields, n) for n in ("PortNumber", "AccNumber")]
    if None in loc_keys or None in acc_keys:
        return []
    loc_ids = pd.DataFrame({"p": _key_text(loc, loc_keys[0]), "a": _key_text(loc, loc_keys[1])})
    acc_ids = pd.DataFrame({"p": _key_text(acc, acc_keys[0]), "a": _key_text(acc, acc_keys[1])})
    known = loc_ids.merge(acc_ids.drop_duplicates().assign(_known=True), how="left", on=["p", "a"])
    orphan = known["_known"].isna().to_numpy()
    problems = _rows(orphan, lambda i: Problem(
        loc_label, i + 1, loc_keys[1], f"account '{loc_ids['a'].iat[i]}' of portfolio '{loc_ids['p'].iat[i]}' is "
        f"not in the account file {acc_label}",
        "add the account to the account file, or correct PortNumber/AccNumber."))
    loc_tag, acc_tag = _find(loc_fields, "CondTag"), _find(acc_fields, "CondTag")
    if loc_tag is not None:
        loc_ids["t"] = _key_text(loc, loc_tag).replace("", "0")
        tagged = (loc_ids["t"] != "0").to_numpy()
        if acc_tag is not None:
            acc_ids["t"] = _key_text(acc, acc_tag).replace("", "0")
            defined = loc_ids.merge(acc_ids.drop_duplicates().assign(_known=True), how="left", on=["p", "a", "t"])
            undefined = tagged & defined["_known"].isna().to_numpy() & ~orphan
        else:
            undefined = tagged & ~orphan
        problems += _rows(undefined, lambda i: Problem(
            loc_label, i + 1, loc_tag, f"CondTag '{loc_ids['t'].iat[i]}' is not defined for account "
            f"'{loc_ids['a'].iat[i]}' in the account file {acc_label}",
            "add the condition (CondTag, CondNumber and its terms) to the account, or clear the CondTag."))
    return problems
