"""Ground-up loss sampling, compatible with the reference's ``gulmc``.

Start with :func:`sample_event_block` (and :func:`prepare_items` to prepare the items once per
analysis). Kernels live in :mod:`.core`, random numbers in :mod:`.random`.
"""

from __future__ import annotations

from perilflow.kernel.gul.core import N_SPECIAL, SPECIAL_SIDX
from perilflow.kernel.gul.run import (
    GUL_STREAM_TYPE,
    PreparedItems,
    gul_stream_bytes,
    prepare_items,
    read_correlations,
    read_gul_inputs,
    sample_event_block,
    split_events,
)

__all__ = [
    "GUL_STREAM_TYPE",
    "N_SPECIAL",
    "SPECIAL_SIDX",
    "PreparedItems",
    "gul_stream_bytes",
    "prepare_items",
    "read_correlations",
    "read_gul_inputs",
    "sample_event_block",
    "split_events",
]
