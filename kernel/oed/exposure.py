"""Load OED exposure (location, account, reinsurance info and scope) into typed DataFrames.

:func:`load_exposure` reads each file (CSV or parquet, or a DataFrame already in memory),
checks it with :mod:`perilflow.kernel.oed.validation` while every cell can still be pointed
at, then loads it through ods-tools (``ods_tools.oed.OedExposure``) so that columns carry
the OED names and dtypes the reference works with (identifiers and codes as categories,
amounts as float64, integer fields as nullable integers).

The location frame gets the reference's internal location id ``loc_id``: the locations
sorted by (``PortNumber``, ``AccNumber``, ``LocNumber``) as text, numbered 1, 2, ... by
distinct triple (oasislmf's ``get_ids`` with ``sort_keys=True``); rows keep their file
order.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.oed.validation import Problem, raise_for_problems, validate_exposure

__all__ = ["LOCATION_ID_COLUMNS", "Exposure", "load_exposure", "location_ids", "oed_schema", "read_raw"]

PathOrFrame = str | os.PathLike | pd.DataFrame

#: Columns whose distinct values number the locations (``loc_id``).
LOCATION_ID_COLUMNS = ("PortNumber", "AccNumber", "LocNumber")


@dataclass
class Exposure:
    """OED exposure as pandas DataFrames with OED column names and dtypes.

    Attributes
    ----------
    location : pandas.DataFrame
        One row per location, in file order, plus ``loc_id`` (int64, from 1).
    account : pandas.DataFrame or None
        One row per account policy (and layer, condition or step), in file order.
    ri_info, ri_scope : pandas.DataFrame or None
        Reinsurance contracts and their scope, when given.
    warnings : list of Problem
        Non-fatal problems found while loading.
    """

    location: pd.DataFrame
    account: pd.DataFrame | None = None
    ri_info: pd.DataFrame | None = None
    ri_scope: pd.DataFrame | None = None
    warnings: list[Problem] = field(default_factory=list)


@functools.cache
def oed_schema():
    """The OED schema bundled with ods-tools ("latest version"), loaded once per process."""
    from ods_tools.oed import OedSchema

    return OedSchema.from_oed_schema_info("latest version")


def read_raw(source: PathOrFrame) -> tuple[pd.DataFrame | None, str]:
    """Read an OED file without converting any cell, for validation.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A ``.csv`` file (any other suffix except ``.parquet``/``.pq`` is read as CSV),
        a parquet file, or a DataFrame (returned as is).

    Returns
    -------
    (pandas.DataFrame or None, str)
        The frame (None for a file without even a header line) and a label for messages.

    Raises
    ------
    ValueError
        If the file does not exist or cannot be parsed.
    """
    if isinstance(source, pd.DataFrame):
        return source, "<DataFrame>"
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{path}: OED file not found. Fix: check the path.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path), str(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise ValueError(f"{path}: cannot read the parquet file ({exc}). Fix: write it again as parquet "
                             "or CSV.") from None
    try:
        # index_col=False: when every row has more cells than the header, pandas would otherwise take the first
        # column as the index and shift every value one column left; here it warns, and the warning is an error
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig",
                                skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning:
        raise ValueError(f"{path}: the rows have more cells than the header has column names. Fix: add the "
                         "missing column names to the header or remove the extra cells (a trailing comma?).") from None
    except pd.errors.EmptyDataError:
        return None, str(path)
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot parse the CSV file ({exc}). Fix: save it as UTF-8 CSV with as many "
                         "cells on every line as in the header.") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, str(path)


def location_ids(location: pd.DataFrame, columns=LOCATION_ID_COLUMNS) -> np.ndarray:
    """Number the locations as the reference's ``get_ids(df, [PortNumber, AccNumber, LocNumber])`` does.

    Each distinct combination of ``columns`` gets an id from 1, in the order
    of the combinations sorted by those columns, and rows with the same
    combination share an id. The sort is the reference's (``sort_values`` on
    the frame ods-tools loads): these OED fields are text, so ``"10"`` comes
    before ``"9"``, and missing values come last. Categorical columns, as
    ods-tools loads them, sort by their *category order*: alphabetical when
    pandas reads the file in one block (PiWind's 12,598 locations), but not
    for larger files, whose categories pandas joins block by block (the
    100,784-location PiWind file); ids follow that order, as the reference's
    do. Numeric columns (a frame read without OED dtypes) are turned into the
    text ods-tools would have read, and sort alphabetically.

    Parameters
    ----------
    location : pandas.DataFrame
        OED locations, with the columns as ods-tools names them.
    columns : sequence of str, default ``("PortNumber", "AccNumber", "LocNumber")``
        Columns identifying a location. Matched case-insensitively.

    Returns
    -------
    numpy.ndarray
        ``int64`` ids, one per row of ``location``, in row order.

    Raises
    ------
    ValueError
        If a column is missing.
    """
    by_lower = {str(name).lower(): name for name in location.columns}
    missing = [column for column in columns if column.lower() not in by_lower]
    if missing:
        raise ValueError(f"location: no column {missing}, needed to number locations (loc_id); "
                         "load the OED location file with its PortNumber, AccNumber and LocNumber columns")
    keys = location[[by_lower[column.lower()] for column in columns]].reset_index(drop=True)
    if keys.empty:
        return np.zeros(0, dtype=np.int64)
    keys = keys.apply(_as_oed_text)
    ids = _sorted_group_ids(keys)
    if ids is not None:
        return ids
    groups = keys.groupby(list(keys.columns), sort=True, observed=True, dropna=False)
    return groups.ngroup().to_numpy(dtype=np.int64) + 1


def _sorted_group_ids(keys: pd.DataFrame) -> np.ndarray | None:
    """``keys.groupby(all columns, sort=True, observed=True, dropna=False).ngroup() + 1`` from per-column sort
    codes (categories in category order, text in text order, missing values last) combined into one int64;
    None when the codes do not fit one int64."""
    combined = np.zeros(len(keys), dtype=np.int64)
    size = 1
    for column in keys.columns:
        values = keys[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy(np.int64)
            count = len(values.cat.categories)
        else:
            codes, uniques = pd.factorize(values, sort=True)
            codes = codes.astype(np.int64)
            count = len(uniques)
        codes = np.where(codes < 0, count, codes)  # missing values sort last
        if size * (count + 1) >= 2 ** 62:
            return None
        combined = combined * (count + 1) + codes
        size *= count + 1
    return np.unique(combined, return_inverse=True)[1].reshape(-1).astype(np.int64) + 1


def _as_oed_text(values: pd.Series) -> pd.Series:
    """An OED id column as ods-tools loads it: categoricals as they are, anything else as text."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    return values.astype("string")


def load_exposure(location: PathOrFrame, account: PathOrFrame | None = None, ri_info: PathOrFrame | None = None,
                  ri_scope: PathOrFrame | None = None, *, validate: bool = True,
                  allow_duplicate_locations: bool = False) -> Exposure:
    """Load and check OED exposure files.

    Parameters
    ----------
    location : str, os.PathLike or pandas.DataFrame
        The OED location file (CSV or parquet) or frame.
    account, ri_info, ri_scope : str, os.PathLike, pandas.DataFrame or None
        The OED account, reinsurance info and reinsurance scope files, if any.
    validate : bool, default True
        Run :func:`~perilflow.kernel.oed.validation.validate_exposure` first.
    allow_duplicate_locations : bool, default False
        Accept a LocNumber repeated within an account with different exposure values (as the
        reference does, using the first row's TIVs) with a warning instead of an error.

    Returns
    -------
    Exposure
        The frames, with ``loc_id`` added to the location frame.

    Raises
    ------
    OedValidationError
        If a file has fatal problems (each named by file, row, column and fix).
    ValueError
        If a file is missing or unreadable.
    """
    sources = {"location": location, "account": account, "ri_info": ri_info, "ri_scope": ri_scope}
    sources = {kind: source for kind, source in sources.items() if source is not None}
    schema = oed_schema()
    problems: list[Problem] = []
    if validate:
        raw = {kind: read_raw(source) for kind, source in sources.items()}
        problems = raise_for_problems(validate_exposure(raw, schema,
                                                        allow_duplicate_locations=allow_duplicate_locations))
    exposure = _load_with_ods_tools(sources)
    exposure.location["loc_id"] = location_ids(exposure.location)
    exposure.warnings = problems
    return exposure


def _load_with_ods_tools(sources: dict[str, PathOrFrame]) -> Exposure:
    """Build the typed frames with ods-tools (``use_field`` gives the OED column names)."""
    from ods_tools.oed import OedExposure

    arguments = {kind: (source.copy() if isinstance(source, pd.DataFrame) else str(source))
                 for kind, source in sources.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            oed = OedExposure(**arguments, check_oed=False, use_field=True)
        except ValueError as exc:
            raise ValueError(f"ods-tools could not load the OED files ({exc}). Fix: run the checks "
                             "(validate=True) to find the cell at fault.") from exc

    def frame(kind: str) -> pd.DataFrame | None:
        source = getattr(oed, kind, None)
        return None if source is None else source.dataframe.reset_index(drop=True)

    return Exposure(location=frame("location"), account=frame("account"), ri_info=frame("ri_info"),
                    ri_scope=frame("ri_scope"))
