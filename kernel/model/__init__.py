"""Oasis model data: footprint, vulnerability, damage bins and the event catalogue files.

Start with :func:`load_model_data` (a whole ``static/`` folder, as a :class:`ModelData`), or the
single-file readers. Layouts live in :mod:`perilflow.kernel.model.dtypes`.
"""

from __future__ import annotations

from perilflow.kernel.model.data import (
    Footprint,
    FootprintBlock,
    ModelData,
    Occurrence,
    Vulnerability,
    date_id_to_date,
    date_to_date_id,
    footprint_from_records,
    load_model_data,
    open_footprint,
    read_damage_bins,
    read_event_rates,
    read_events,
    read_occurrence,
    read_periods,
    read_quantiles,
    read_return_periods,
    read_vulnerability,
    select_file_ids,
)

__all__ = [
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
