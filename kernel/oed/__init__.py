"""OED exposure in: loading (through ods-tools) and checks that name file, row, column and fix.

Start with :func:`load_exposure`; it returns an :class:`Exposure` of DataFrames or raises
:class:`OedValidationError` listing every :class:`Problem`.
"""

from __future__ import annotations

from perilflow.kernel.oed.exposure import LOCATION_ID_COLUMNS, Exposure, load_exposure, location_ids, read_raw
from perilflow.kernel.oed.validation import OedValidationError, Problem, validate_exposure, validate_frame

__all__ = [
    "LOCATION_ID_COLUMNS",
    "Exposure",
    "OedValidationError",
    "Problem",
    "load_exposure",
    "location_ids",
    "read_raw",
    "validate_exposure",
    "validate_frame",
]
