"""Record layouts of the Oasis model data files (``static/``), as numpy structured dtypes.

Every layout is little-endian and packed (no padding), exactly like the ``.bin`` files of
ktools and oasislmf's pytools, so ``numpy.fromfile`` / ``numpy.memmap`` read them directly.
Field names equal the CSV header names. The layouts of the Oasis *input* files (items,
coverages, fm_*) live in :mod:`perilflow.kernel.oasis.dtypes`; the one input file that only the
ground-up loss step reads, ``correlations``, is declared here.

Headers:

* ``footprint.bin`` / ``footprint.bin.z`` start with :data:`FOOTPRINT_HEADER_DTYPE`
  (``num_intensity_bins``, flags: bit 0 = has intensity uncertainty, bit 1 = the ``.idx.z``
  index carries the decompressed size);
* ``vulnerability.bin`` starts with one int32, the number of damage bins;
* ``occurrence.bin`` starts with two int32: the date options (bit 0 = date algorithm,
  bit 1 = granular dates with an int64 ``occ_date_id``) and the number of periods.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AREAPERIL_INT",
    "CORRELATIONS_DTYPE",
    "CORRELATIONS_LEGACY_DTYPE",
    "DAMAGE_BIN_DICT_DTYPE",
    "DAMAGE_TYPE_ABSOLUTE",
    "DAMAGE_TYPE_DEFAULT",
    "DAMAGE_TYPE_DURATION",
    "DAMAGE_TYPE_RELATIVE",
    "EVENT_RATES_DTYPE",
    "EVENTS_DTYPE",
    "FOOTPRINT_CSV_DTYPE",
    "FOOTPRINT_EVENT_DTYPE",
    "FOOTPRINT_HEADER_DTYPE",
    "FOOTPRINT_INDEX_DTYPE",
    "FOOTPRINT_INDEX_Z_DTYPE",
    "OCCURRENCE_DTYPE",
    "OCCURRENCE_GRANULAR_DTYPE",
    "PERIODS_DTYPE",
    "QUANTILE_DTYPE",
    "RETURNPERIODS_DTYPE",
    "VULNERABILITY_DTYPE",
    "VULNERABILITY_INDEX_DTYPE",
    "VULNERABILITY_ROW_DTYPE",
]

#: ``areaperil_id`` is uint32 (as :mod:`perilflow.kernel.oasis.dtypes`).
AREAPERIL_INT = np.dtype("<u4")

#: ``damage_type`` values of damage_bin_dict (0 default, 1 relative, 2 absolute, 3 duration).
DAMAGE_TYPE_DEFAULT = 0
DAMAGE_TYPE_RELATIVE = 1
DAMAGE_TYPE_ABSOLUTE = 2
DAMAGE_TYPE_DURATION = 3


def _packed(fields: list[tuple[str, str | np.dtype]]) -> np.dtype:
    """Build a structured dtype and check that it is little-endian and packed.

    Parameters
    ----------
    fields : list of (str, str or numpy.dtype)
        Field names and scalar types, in file order.

    Returns
    -------
    numpy.dtype
        The structured dtype.

    Raises
    ------
    AssertionError
        If the layout has padding or a field is not little-endian (raised explicitly so the
        check also runs under ``python -O``).
    """
    dtype = np.dtype(fields)
    offset = 0
    for name in dtype.names:
        field_type, field_offset = dtype.fields[name][:2]
        if field_offset != offset or field_type.str[0] not in "<|":
            raise AssertionError(f"field {name!r} is not packed little-endian")
        offset += field_type.itemsize
    if dtype.itemsize != offset:
        raise AssertionError(f"record is {dtype.itemsize} bytes but its fields add up to {offset}")
    return dtype


FOOTPRINT_HEADER_DTYPE = _packed([("num_intensity_bins", "<i4"), ("flags", "<i4")])
#: One record of a footprint event block (``footprint.bin`` body; no event_id inside).
FOOTPRINT_EVENT_DTYPE = _packed([("areaperil_id", AREAPERIL_INT), ("intensity_bin_id", "<i4"),
                                 ("probability", "<f4")])
#: ``footprint.csv`` (and the parquet footprint's columns).
FOOTPRINT_CSV_DTYPE = _packed([("event_id", "<i4"), ("areaperil_id", AREAPERIL_INT),
                               ("intensity_bin_id", "<i4"), ("probability", "<f4")])
#: ``footprint.idx``: ``offset`` in bytes from the start of footprint.bin (header included).
FOOTPRINT_INDEX_DTYPE = _packed([("event_id", "<i4"), ("offset", "<i8"), ("size", "<i8")])
#: ``footprint.idx.z`` when the header flag bit 1 is set: adds the decompressed size.
FOOTPRINT_INDEX_Z_DTYPE = _packed([("event_id", "<i4"), ("offset", "<i8"), ("size", "<i8"),
                                   ("d_size", "<i8")])

#: ``vulnerability.bin`` body (after the int32 header) and ``vulnerability.csv``.
VULNERABILITY_DTYPE = _packed([("vulnerability_id", "<i4"), ("intensity_bin_id", "<i4"),
                               ("damage_bin_id", "<i4"), ("probability", "<f4")])
#: ``vulnerability.bin`` body when a ``vulnerability.idx`` exists (no vulnerability_id inside).
VULNERABILITY_ROW_DTYPE = _packed([("intensity_bin_id", "<i4"), ("damage_bin_id", "<i4"),
                                   ("probability", "<f4")])
#: ``vulnerability.idx`` / ``.idx.z``: offset in bytes (header included); ``original_size`` is
#: the decompressed size of a ``.z`` block (0 when not compressed).
VULNERABILITY_INDEX_DTYPE = _packed([("vulnerability_id", "<i4"), ("offset", "<i8"), ("size", "<i8"),
                                     ("original_size", "<i8")])

DAMAGE_BIN_DICT_DTYPE = _packed([("bin_index", "<i4"), ("bin_from", "<f4"), ("bin_to", "<f4"),
                                 ("interpolation", "<f4"), ("damage_type", "<i4")])

EVENTS_DTYPE = _packed([("event_id", "<i4")])
OCCURRENCE_DTYPE = _packed([("event_id", "<i4"), ("period_no", "<i4"), ("occ_date_id", "<i4")])
OCCURRENCE_GRANULAR_DTYPE = _packed([("event_id", "<i4"), ("period_no", "<i4"), ("occ_date_id", "<i8")])
PERIODS_DTYPE = _packed([("period_no", "<i4"), ("weighting", "<f8")])
RETURNPERIODS_DTYPE = _packed([("return_period", "<i4")])
QUANTILE_DTYPE = _packed([("quantile", "<f4")])
#: ``event_rates.csv`` is read as (EventIds, Event_rates).
EVENT_RATES_DTYPE = _packed([("event_id", "<i4"), ("rate", "<f4")])

#: ``correlations`` (input/) as oasislmf 2.5.8 writes it.
CORRELATIONS_DTYPE = _packed([("item_id", "<i4"), ("peril_correlation_group", "<i4"),
                              ("damage_correlation_value", "<f4"), ("hazard_group_id", "<i4"),
                              ("hazard_correlation_value", "<f4"), ("source_item_id", "<i4")])
#: ``correlations`` written before coverage dependencies existed (no ``source_item_id``).
CORRELATIONS_LEGACY_DTYPE = _packed([(name, CORRELATIONS_DTYPE.fields[name][0])
                                     for name in CORRELATIONS_DTYPE.names[:5]])
