"""Shared pieces of the keys lookup: errors, key statuses, id columns and location ids.

The keys lookup turns OED locations into *keys*: one row per (location, peril,
coverage type) with the model's ``area_peril_id`` and ``vulnerability_id``.
This module holds what every lookup (built-in or model-supplied) shares:

* :class:`KeysLookupError` and its two kinds, :class:`LookupConfigError` (the
  lookup configuration or the keys data it names is wrong) and
  :class:`LookupDataError` (the location data lacks what the lookup needs).
  Both are ``ValueError`` subclasses whose message names the file or field
  and ends with a fix.
* The key statuses of the reference (``success``, ``fail``, ``nomatch``,
  ``fail_ap``, ``fail_v``, ``notatrisk``, ``noreturn``) and :data:`UNKNOWN_ID`.
* :func:`set_id_columns`, the reference's rule that an id which is missing or
  not positive becomes ``-1``.
* :func:`location_ids`, the reference's ``loc_id`` numbering.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.oed.exposure import LOCATION_ID_COLUMNS, location_ids

__all__ = [
    "ID_COLUMNS",
    "KEYS_STATUSES",
    "KeysLookupError",
    "LOCATION_ID_COLUMNS",
    "LookupConfigError",
    "LookupDataError",
    "MODELLED_STATUSES",
    "STATUS_FAIL",
    "STATUS_FAIL_AP",
    "STATUS_FAIL_V",
    "STATUS_NOMATCH",
    "STATUS_NORETURN",
    "STATUS_NOTATRISK",
    "STATUS_SUCCESS",
    "UNKNOWN_ID",
    "location_ids",
    "set_id_columns",
]

#: Value given to an id that the lookup could not find (the reference's ``OASIS_UNKNOWN_ID``).
UNKNOWN_ID = -1

STATUS_SUCCESS = "success"
STATUS_FAIL = "fail"
STATUS_NOMATCH = "nomatch"
STATUS_FAIL_AP = "fail_ap"
STATUS_FAIL_V = "fail_v"
STATUS_NOTATRISK = "notatrisk"
STATUS_NORETURN = "noreturn"

#: Every status a keys row may carry, as the reference spells them.
KEYS_STATUSES = (
    STATUS_SUCCESS,
    STATUS_FAIL,
    STATUS_NOMATCH,
    STATUS_FAIL_AP,
    STATUS_FAIL_V,
    STATUS_NOTATRISK,
    STATUS_NORETURN,
)

#: Statuses whose rows count as modelled (the reference's ``OASIS_KEYS_STATUS_MODELLED``).
MODELLED_STATUSES = (STATUS_SUCCESS, STATUS_NOTATRISK)

#: Id columns of a keys row, in the order the reference checks them for unknown ids.
ID_COLUMNS = ("coverage_type", "area_peril_id", "vulnerability_id")

#: OED columns that identify a location; ``loc_id`` numbers their distinct combinations.


class KeysLookupError(ValueError):
    """A keys lookup cannot run: its configuration, its keys data or the locations are wrong.

    Parameters
    ----------
    problem : str
        What is wrong.
    source : str or Path, optional
        The file (lookup config, keys data file, location file) or object the
        problem is in; it starts the message.
    step : str, optional
        Name of the lookup step (a key of ``step_definition``) concerned.
    fix : str, optional
        How to fix it; ends the message after ``Fix:``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | Path | None = None,
        step: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.step = step
        self.fix = fix
        where = []
        if source is not None:
            where.append(str(source))
        if step is not None:
            where.append(f"step '{step}'")
        message = f"{', '.join(where)}: {problem.rstrip()}" if where else problem.rstrip()
        if not message.endswith((".", "?", "!")):
            message += "."
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)

    def __reduce__(self):
        # Keep the keyword arguments when the error is pickled (worker processes, task runners).
        return (_rebuild, (type(self), self.problem, self.source, self.step, self.fix))


def _rebuild(cls, problem, source, step, fix) -> KeysLookupError:
    """Recreate an unpickled KeysLookupError of class ``cls``."""
    return cls(problem, source=source, step=step, fix=fix)


class LookupConfigError(KeysLookupError):
    """The lookup configuration, or a keys data file it names, is missing or wrong."""


class LookupDataError(KeysLookupError):
    """The location data lacks a column or value that the lookup needs."""


def set_id_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Make ``columns`` integer id columns: missing, NaN or non-positive ids become ``-1``.

    A column absent from ``frame`` is created filled with ``-1``. The columns
    become pandas ``Int64`` (nullable, but after this call never null).
    ``frame`` is modified in place and returned.

    Parameters
    ----------
    frame : pandas.DataFrame
        Keys or intermediate lookup rows.
    columns : iterable of str
        Names of the id columns.

    Returns
    -------
    pandas.DataFrame
        ``frame`` itself.

    Raises
    ------
    LookupDataError
        If a column holds values that are not whole numbers.
    """
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.array(np.full(len(frame), UNKNOWN_ID), dtype="Int64")
            continue
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(values.cat.categories.dtype)
        if not pd.api.types.is_numeric_dtype(values.dtype):
            values = pd.to_numeric(values, errors="coerce")
        try:
            ids = values.astype("Int64")
        except (TypeError, ValueError) as error:
            raise LookupDataError(
                f"column '{column}' holds values that are not whole numbers ({error})",
                fix=f"make the keys data give integer {column} values",
            ) from error
        ids = ids.fillna(UNKNOWN_ID)
        frame[column] = ids.mask(ids <= 0, UNKNOWN_ID)
    return frame
