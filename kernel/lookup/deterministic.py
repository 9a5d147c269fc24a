"""The deterministic "peril covered" lookup used to test financial structures.

Like the reference's ``PerilCoveredDeterministicLookup`` (oasislmf 2.5), every location
gets one key per peril it covers and per coverage type, and every key whose peril the
model covers gets the next sequential id as both ``area_peril_id`` and
``vulnerability_id``:

1. each location row's ``LocPerilsCovered`` (``PolPerilsCovered`` when the frame has no
   location column) is split on ``;`` and every code is expanded to its single perils
   with the OED peril tables of ods-tools (``WW1`` -> ``WEC, WSS, WTC``; a single peril
   stands for itself);
2. each (location row, peril) pair is crossed with the coverage types (OED property
   coverages 1-4 by default) and the keys are sorted by (``loc_id``, ``peril_id``,
   ``coverage_type``), keeping row order among equal keys;
3. keys whose peril is one of the model's perils (``perils``, also expanded) are
   numbered 1, 2, ... in that order; the others get status ``noreturn``.

A location listed on several rows (the reference's way to give it several conditions)
gets a set of keys per row, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_COVERAGE_TYPES", "KEY_COLUMNS", "deterministic_keys", "expand_perils", "peril_groups"]

#: OED property coverage types: buildings, other, contents, BI.
DEFAULT_COVERAGE_TYPES = (1, 2, 3, 4)

#: Columns of the keys returned (``status`` and ``message`` are added with ``with_errors``).
KEY_COLUMNS = ("loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id")

_SUCCESS = "success"
_NORETURN = "noreturn"


def peril_groups(schema=None) -> pd.DataFrame:
    """Table ``peril_group_id -> peril_id`` of the OED schema.

    Every single peril maps to itself, and every peril group (``Grouped PerilCode`` Yes)
    to each peril it covers, in the schema's order.

    Parameters
    ----------
    schema : ods_tools.oed.OedSchema, optional
        Defaults to the latest OED schema bundled with ods-tools.

    Returns
    -------
    pandas.DataFrame
        Columns ``peril_group_id``, ``peril_id``.
    """
    if schema is None:
        from ods_tools.oed import OedSchema

        schema = OedSchema.from_oed_schema_info("latest version")
    info = schema.schema["perils"]["info"]
    covered = schema.schema["perils"]["covered"]
    singles = [(code, code) for code, peril in info.items() if peril["Grouped PerilCode"] != "Yes"]
    groups = [(code, peril) for code, entry in info.items() if entry["Grouped PerilCode"] == "Yes"
              for peril in covered[code]]
    return pd.DataFrame(singles + groups, columns=["peril_group_id", "peril_id"])


def expand_perils(codes: Sequence[str], groups: pd.DataFrame | None = None) -> list[str]:
    """The single perils covered by peril codes or groups (sorted, unique).

    Raises
    ------
    ValueError
        If a code is not an OED peril or peril group.
    """
    groups = peril_groups() if groups is None else groups
    known = set(groups["peril_group_id"])
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise ValueError(f"unknown peril code(s) {', '.join(map(repr, unknown))}. Fix: use OED peril codes "
                         "(e.g. WTC, WSS) or peril groups (e.g. WW1, WW2, AA1).")
    return sorted(set(groups.loc[groups["peril_group_id"].isin(list(codes)), "peril_id"]))


def deterministic_keys(location: pd.DataFrame, perils: Sequence[str], *,
                       coverage_types: Sequence[int] = DEFAULT_COVERAGE_TYPES,
                       with_errors: bool = False) -> pd.DataFrame:
    """Keys of the deterministic lookup (see the module docstring).

    Parameters
    ----------
    location : pandas.DataFrame
        OED locations with ``loc_id`` and ``LocPerilsCovered`` (or ``PolPerilsCovered``).
    perils : sequence of str
        Perils or peril groups the model covers, e.g. ``["WTC"]`` or ``["WW2"]``.
    coverage_types : sequence of int, default (1, 2, 3, 4)
        Coverage types keyed for every covered peril.
    with_errors : bool, default False
        Also return the keys of perils the model does not cover, with ``status``
        ``noreturn``; every row then carries ``status`` and ``message``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`KEY_COLUMNS` (ids int64), one row per key, in the reference's order.

    Raises
    ------
    ValueError
        If ``location`` lacks ``loc_id`` or a perils-covered column, or ``perils`` holds an
        unknown code.
    """
    if "loc_id" not in location.columns:
        raise ValueError("location has no 'loc_id' column. Fix: load it with perilflow.kernel.oed.load_exposure "
                         "(or add location_ids(location)).")
    covered_column = next((c for c in ("LocPerilsCovered", "PolPerilsCovered") if c in location.columns), None)
    if covered_column is None:
        raise ValueError("location has neither 'LocPerilsCovered' nor 'PolPerilsCovered'. Fix: add the perils "
                         "covered by each location (e.g. 'WW1' or 'WTC;WSS').")
    groups = peril_groups()
    model_perils = expand_perils(list(perils), groups)

    codes = location[covered_column].astype("string").fillna("").str.split(";")
    per_row = pd.DataFrame({"row": np.arange(len(location)), "loc_id": location["loc_id"].to_numpy(np.int64),
                            "peril_group_id": codes.to_numpy()}).explode("peril_group_id")
    per_row["peril_group_id"] = per_row["peril_group_id"].astype(str).str.strip()
    per_row = per_row.drop_duplicates(["row", "peril_group_id"])
    row_perils = per_row.merge(groups, on="peril_group_id", how="inner")[["row", "loc_id", "peril_id"]]

    coverage = pd.DataFrame({"coverage_type": np.asarray(coverage_types, dtype=np.int64)})
    keys = (row_perils.merge(coverage, how="cross")
            .sort_values(["loc_id", "peril_id", "coverage_type"], kind="stable")
            .reset_index(drop=True))
    success = keys["peril_id"].isin(model_perils).to_numpy()
    ids = np.zeros(len(keys), dtype=np.int64)
    ids[success] = np.arange(1, int(success.sum()) + 1)
    keys["area_peril_id"] = ids
    keys["vulnerability_id"] = ids
    if not with_errors:
        return keys.loc[success, list(KEY_COLUMNS)].reset_index(drop=True)
    keys["status"] = np.where(success, _SUCCESS, _NORETURN)
    keys["message"] = np.where(success, "", "unsupported peril_id")
    keys.loc[~success, ["area_peril_id", "vulnerability_id"]] = -1
    return keys[[*KEY_COLUMNS, "status", "message"]]
