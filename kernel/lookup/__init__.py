"""Keys lookup: OED locations to Oasis keys, configured by the model as in oasislmf 2.5.

Start with :func:`run_lookup`::

    from perilflow.kernel.lookup import location_ids, run_lookup, write_keys, write_keys_errors

    location["loc_id"] = location_ids(location)          # the reference's loc_id numbering
    keys, errors = run_lookup("keys_data/PiWind/lookup_config.json", location)
    write_keys("input/keys.csv", keys)
    write_keys_errors("input/keys-errors.csv", errors)

Modules:

* :mod:`~perilflow.kernel.lookup.builtin`: configuration loading, the built-in
  step lookup (:class:`BuiltinLookup`), model lookup classes, :func:`run_lookup`;
* :mod:`~perilflow.kernel.lookup.steps`: the step types (``rtree``,
  ``fixed_size_geo_grid``, ``split_loc_perils_covered``, ``merge``,
  ``simple_pivot``, ``combine``, ...);
* :mod:`~perilflow.kernel.lookup.areaperil`: area peril polygons;
* :mod:`~perilflow.kernel.lookup.keys_files`: ``keys.csv`` / ``keys-errors.csv``;
* :mod:`~perilflow.kernel.lookup.common`: errors, statuses, :func:`location_ids`.

Configuration and data problems raise :class:`LookupConfigError` or
:class:`LookupDataError` (both ``ValueError``), naming the file or field and the fix.
"""

from __future__ import annotations

from perilflow.kernel.lookup.builtin import (
    ERROR_COLUMNS,
    KEY_COLUMNS,
    BasicKeyLookup,
    BuiltinLookup,
    LookupConfig,
    create_lookup,
    finalise_keys,
    get_lookup_class,
    load_lookup_config,
    run_lookup,
)
from perilflow.kernel.lookup.common import (
    KEYS_STATUSES,
    LOCATION_ID_COLUMNS,
    MODELLED_STATUSES,
    STATUS_FAIL,
    STATUS_FAIL_AP,
    STATUS_FAIL_V,
    STATUS_NOMATCH,
    STATUS_NORETURN,
    STATUS_NOTATRISK,
    STATUS_SUCCESS,
    UNKNOWN_ID,
    KeysLookupError,
    LookupConfigError,
    LookupDataError,
    location_ids,
    set_id_columns,
)
from perilflow.kernel.lookup.keys_files import read_keys, read_keys_errors, write_keys, write_keys_errors

__all__ = [
    "ERROR_COLUMNS",
    "KEYS_STATUSES",
    "KEY_COLUMNS",
    "LOCATION_ID_COLUMNS",
    "MODELLED_STATUSES",
    "STATUS_FAIL",
    "STATUS_FAIL_AP",
    "STATUS_FAIL_V",
    "STATUS_NOMATCH",
    "STATUS_NORETURN",
    "STATUS_NOTATRISK",
    "STATUS_SUCCESS",
    "UNKNOWN_ID",
    "BasicKeyLookup",
    "BuiltinLookup",
    "KeysLookupError",
    "LookupConfig",
    "LookupConfigError",
    "LookupDataError",
    "create_lookup",
    "finalise_keys",
    "get_lookup_class",
    "load_lookup_config",
    "location_ids",
    "read_keys",
    "read_keys_errors",
    "run_lookup",
    "set_id_columns",
    "write_keys",
    "write_keys_errors",
]
