"""Record layouts of the Oasis input files, as numpy structured dtypes.

This is the single place where the byte layout of every Oasis input file is
declared. Each layout is little-endian and packed (no padding between fields),
exactly like the ``.bin`` files written by ktools (``#pragma pack(1)``) and by
oasislmf's pytools, so an array can be written with ``array.tobytes()`` and
read back with ``numpy.fromfile``. Field names equal the CSV header names, so
the same dtype describes the CSV columns too.

One file is special: ``coverages.bin`` holds only the ``tiv`` values (float32);
the coverage id is the position in the file, starting at 1. In memory (and in
``coverages.csv``) coverages use the two-field layout ``COVERAGES_DTYPE``.

The files store float32 values. Calculations should accumulate in
``LOSS_DTYPE`` (float64) and convert to float32 only when writing.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AREAPERIL_INT",
    "COVERAGES_BIN_DTYPE",
    "COVERAGES_DTYPE",
    "FILE_DTYPES",
    "FMSUMMARYXREF_DTYPE",
    "FM_POLICYTC_DTYPE",
    "FM_PROFILE_DTYPE",
    "FM_PROFILE_FIELDS",
    "FM_PROFILE_STEP_DTYPE",
    "FM_PROGRAMME_DTYPE",
    "FM_STEP_FIELDS",
    "FM_XREF_DTYPE",
    "GULSUMMARYXREF_DTYPE",
    "ITEMS_DTYPE",
    "LOSS_DTYPE",
    "OASIS_FLOAT",
    "OASIS_INT",
    "OASIS_UINT",
]

#: Precision used for loss calculations in memory (files store float32).
LOSS_DTYPE = np.float64

#: Scalar types used in the files (Oasis ``oasis_int``, ``oasis_float``, ...).
OASIS_INT = np.dtype("<i4")
OASIS_UINT = np.dtype("<u4")
OASIS_FLOAT = np.dtype("<f4")
#: ``areaperil_id`` is uint32 (oasislmf can be built with uint64; we use uint32).
AREAPERIL_INT = np.dtype("<u4")


def _packed(fields: list[tuple[str, np.dtype]]) -> np.dtype:
    """Build a structured dtype and check that it is little-endian and packed.

    Parameters
    ----------
    fields : list of (str, numpy.dtype)
        Field names and scalar types, in file order.

    Returns
    -------
    numpy.dtype
        The structured dtype.

    Raises
    ------
    AssertionError
        If the layout has padding or a field is not little-endian. Raised
        explicitly (not with ``assert``) so the check also runs under ``-O``.
    """
    dtype = np.dtype(fields)
    offset = 0
    for name in dtype.names:
        field_type, field_offset = dtype.fields[name][:2]
        if field_offset != offset:
            raise AssertionError(f"field {name!r} at offset {field_offset}, expected {offset}")
        if field_type.str[0] != "<":
            raise AssertionError(f"field {name!r} has type {field_type.str}, expected little-endian")
        offset += field_type.itemsize
    if dtype.itemsize != offset:
        raise AssertionError(f"record is {dtype.itemsize} bytes but its fields add up to {offset}")
    return dtype


ITEMS_DTYPE = _packed(
    [
        ("item_id", OASIS_INT),
        ("coverage_id", OASIS_UINT),
        ("areaperil_id", AREAPERIL_INT),
        ("vulnerability_id", OASIS_INT),
        ("group_id", OASIS_UINT),
    ]
)

#: In-memory and CSV layout of coverages; ``coverages.bin`` stores ``tiv`` only.
COVERAGES_DTYPE = _packed([("coverage_id", OASIS_UINT), ("tiv", OASIS_FLOAT)])
#: One ``coverages.bin`` record: the tiv of coverage ``position + 1``.
COVERAGES_BIN_DTYPE = OASIS_FLOAT

FM_PROGRAMME_DTYPE = _packed(
    [("from_agg_id", OASIS_INT), ("level_id", OASIS_INT), ("to_agg_id", OASIS_INT)]
)

FM_POLICYTC_DTYPE = _packed(
    [("level_id", OASIS_INT), ("agg_id", OASIS_INT), ("layer_id", OASIS_INT), ("profile_id", OASIS_INT)]
)

_FM_PROFILE_FIELDS = [
    ("profile_id", OASIS_INT),
    ("calcrule_id", OASIS_INT),
    ("deductible1", OASIS_FLOAT),
    ("deductible2", OASIS_FLOAT),  # minimum deductible
    ("deductible3", OASIS_FLOAT),  # maximum deductible
    ("attachment1", OASIS_FLOAT),
    ("limit1", OASIS_FLOAT),
    ("share1", OASIS_FLOAT),
    ("share2", OASIS_FLOAT),
    ("share3", OASIS_FLOAT),
]
_FM_STEP_FIELDS = [
    ("step_id", OASIS_INT),
    ("trigger_start", OASIS_FLOAT),
    ("trigger_end", OASIS_FLOAT),
    ("payout_start", OASIS_FLOAT),
    ("payout_end", OASIS_FLOAT),
    ("limit2", OASIS_FLOAT),
    ("scale1", OASIS_FLOAT),
    ("scale2", OASIS_FLOAT),
]
FM_PROFILE_DTYPE = _packed(_FM_PROFILE_FIELDS)
FM_PROFILE_STEP_DTYPE = _packed(_FM_PROFILE_FIELDS + _FM_STEP_FIELDS)
#: Field names of fm_profile, and the extra ones that fm_profile_step adds.
FM_PROFILE_FIELDS: tuple[str, ...] = FM_PROFILE_DTYPE.names
FM_STEP_FIELDS: tuple[str, ...] = tuple(name for name, _ in _FM_STEP_FIELDS)

FM_XREF_DTYPE = _packed([("output", OASIS_INT), ("agg_id", OASIS_INT), ("layer_id", OASIS_INT)])

GULSUMMARYXREF_DTYPE = _packed(
    [("item_id", OASIS_INT), ("summary_id", OASIS_INT), ("summaryset_id", OASIS_INT)]
)
FMSUMMARYXREF_DTYPE = _packed(
    [("output", OASIS_INT), ("summary_id", OASIS_INT), ("summaryset_id", OASIS_INT)]
)

#: File name (without extension) -> record layout. For ``coverages`` this is the
#: CSV / in-memory layout; see ``COVERAGES_BIN_DTYPE`` for the .bin file.
FILE_DTYPES: dict[str, np.dtype] = {
    "items": ITEMS_DTYPE,
    "coverages": COVERAGES_DTYPE,
    "fm_programme": FM_PROGRAMME_DTYPE,
    "fm_policytc": FM_POLICYTC_DTYPE,
    "fm_profile": FM_PROFILE_DTYPE,
    "fm_profile_step": FM_PROFILE_STEP_DTYPE,
    "fm_xref": FM_XREF_DTYPE,
    "gulsummaryxref": GULSUMMARYXREF_DTYPE,
    "fmsummaryxref": FMSUMMARYXREF_DTYPE,
}
