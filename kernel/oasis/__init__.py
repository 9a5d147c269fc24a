"""Oasis LMF input files: record layouts, readers, writers and validation.

Start with :func:`read_table` (one file), :func:`read_fm_profile`,
:func:`read_fm_inputs` (a whole FM folder, checked) and :func:`read_ri_layers`.
Layouts live in :mod:`perilflow.kernel.oasis.dtypes`.
"""

from __future__ import annotations

from perilflow.kernel.oasis.dtypes import FILE_DTYPES, LOSS_DTYPE
from perilflow.kernel.oasis.errors import OasisFileError
from perilflow.kernel.oasis.files import (
    FmInputs,
    RiPass,
    check_contiguous_ids,
    check_fm_inputs,
    convert,
    find_table,
    read_fm_inputs,
    read_fm_profile,
    read_ri_layers,
    read_table,
    validate_fm_inputs,
    write_bin,
    write_csv,
)

__all__ = [
    "FILE_DTYPES",
    "LOSS_DTYPE",
    "FmInputs",
    "OasisFileError",
    "RiPass",
    "check_contiguous_ids",
    "check_fm_inputs",
    "convert",
    "find_table",
    "read_fm_inputs",
    "read_fm_profile",
    "read_ri_layers",
    "read_table",
    "validate_fm_inputs",
    "write_bin",
    "write_csv",
]
