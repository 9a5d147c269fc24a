"""Ground-up (GUL) Oasis input files from OED locations and keys.

:func:`build_gul_inputs` turns locations and lookup keys into one row per *item* (a
location, peril, coverage type and building) exactly as oasislmf 2.5 does in
``get_gul_input_items``; :func:`write_gul_inputs` writes ``items.csv``,
``coverages.csv``, ``gul_summary_map.csv`` and, when the model correlates perils,
``correlations.csv`` (plus ``amplifications.csv`` for keys with amplification ids).

The rules, in order:

* locations whose TIVs (``BuildingTIV``, ``OtherTIV``, ``ContentsTIV``, ``BITIV``) are
  all zero or blank are dropped; a location listed on several rows is taken from its
  first row;
* keys are joined to locations on ``loc_id`` in key order; an item's TIV is the TIV of
  its coverage type;
* disaggregation: with ``NumberOfBuildings`` N > 1 every TIV is divided by N and each
  item is repeated for ``building_id`` 1..N (``risk_id`` follows ``building_id`` only for
  ``IsAggregate`` = 1 locations);
* items with zero TIV are dropped (so are keys that failed: only ``success`` keys are used);
* ``item_id`` numbers the distinct (loc_id, peril_id, coverage_type_id, building_id) in
  order of appearance, ``coverage_id`` the distinct (loc_id, building_id, coverage_type_id);
* ``group_id`` (damage) and ``hazard_group_id`` hash the damage and hazard group columns
  (``PortNumber, AccNumber, LocNumber`` unless the model settings name others, plus
  ``peril_correlation_group`` when correlations are on): the columns are renamed to lower
  case and sorted, hashed row by row with ``pandas.util.hash_pandas_object(index=False)``,
  shifted right 33 bits and kept as uint32.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_GROUP_FIELDS",
    "TIV_COLUMNS",
    "GulInputs",
    "build_gul_inputs",
    "peril_correlation_table",
    "write_frame_csv",
    "write_gul_inputs",
]

#: OED TIV column of each coverage type (property 1-4, cyber 7-15).
TIV_COLUMNS = {1: "BuildingTIV", 2: "OtherTIV", 3: "ContentsTIV", 4: "BITIV", 7: "CyberNPBITIV", 8: "CyberCBITIV",
               9: "CyberDIASTIV", 10: "CyberEXTTIV", 11: "CyberFINTIV", 12: "CyberINRETIV", 13: "CyberLIATIV",
               14: "CyberREGTIV", 15: "CyberENOTIV"}

#: Location columns that define a damage (and hazard) group unless the model settings say otherwise.
DEFAULT_GROUP_FIELDS = ("PortNumber", "AccNumber", "LocNumber")

#: Item columns (not location columns) that may also define groups.
_ITEM_GROUP_FIELDS = ("item_id", "peril_id", "coverage_id", "coverage_type_id", "peril_correlation_group",
                      "building_id", "risk_id")

_KEY_RENAMES = {"coverage_type": "coverage_type_id", "area_peril_id": "areaperil_id"}
_OPTIONAL_KEY_COLUMNS = ("amplification_id", "section_id", "intensity_adjustment", "return_period")
_SUMMARY_COLUMNS = ("loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id",
                    "tiv", "coverage_id", "item_id", "building_id")


@dataclass
class GulInputs:
    """The GUL items of a portfolio.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per item, sorted by ``item_id``: identifiers (``loc_id``, ``PortNumber``,
        ``AccNumber``, ``LocNumber``, ``loc_idx``), ``peril_id``, ``coverage_type_id``, ``tiv``,
        ``areaperil_id``, ``vulnerability_id``, ``group_id``, ``coverage_id``, ``item_id``,
        ``building_id``, ``risk_id``, ``NumberOfBuildings``, ``NumberOfRisks``, ``IsAggregate``,
        ``LocPeril`` (when given), the per-building TIV columns, and the correlation columns.
    correlated : bool
        True when the model settings define peril correlations.
    """

    frame: pd.DataFrame
    correlated: bool = False

    @property
    def items(self) -> pd.DataFrame:
        """``items``: item_id, coverage_id, areaperil_id, vulnerability_id, group_id."""
        return self.frame[["item_id", "coverage_id", "areaperil_id", "vulnerability_id", "group_id"]]

    @property
    def coverages(self) -> pd.DataFrame:
        """``coverages``: coverage_id, tiv (one row per coverage, ids 1..N in order)."""
        return (self.frame[["coverage_id", "tiv"]].drop_duplicates("coverage_id")
                .sort_values("coverage_id", kind="stable").reset_index(drop=True))

    @property
    def gul_summary_map(self) -> pd.DataFrame:
        """``gul_summary_map``: the OED identifiers of every item (layer_id 1, agg_id = item_id)."""
        columns = {}
        for column in _SUMMARY_COLUMNS:
            if column in self.frame.columns:
                values = self.frame[column]
                if column in ("PortNumber", "AccNumber", "LocNumber", "peril_id"):
                    columns[column] = pd.Series(_as_str(values), dtype=object)
                else:
                    columns[column] = pd.Series(_plain(values), copy=True)
        summary = pd.DataFrame(columns, copy=False)
        summary["layer_id"] = 1
        summary["agg_id"] = summary["item_id"]
        return summary

    @property
    def correlations(self) -> pd.DataFrame:
        """``correlations``: item_id, peril_correlation_group, damage_correlation_value, hazard_group_id,
        hazard_correlation_value, source_item_id."""
        table = self.frame[["item_id", "peril_correlation_group", "damage_correlation_value", "hazard_group_id",
                            "hazard_correlation_value"]].copy()
        table["source_item_id"] = 0
        return table


def peril_correlation_table(model_settings: Mapping | None) -> pd.DataFrame | None:
    """Peril -> correlation group and values from model settings, or None without correlations.

    Supported perils (``lookup_settings.supported_perils``, each with an optional
    ``peril_correlation_group``, default 0) are joined to ``correlation_settings`` (top
    level, or under ``model_settings``) on ``peril_correlation_group``.

    Returns
    -------
    pandas.DataFrame or None
        Columns ``peril_id``, ``peril_correlation_group``, ``damage_correlation_value``,
        ``hazard_correlation_value``; None when no correlation settings are defined.
    """
    if not model_settings:
        return None
    settings = model_settings.get("model_settings", {}).get("correlation_settings",
                                                            model_settings.get("correlation_settings", []))
    if not isinstance(settings, list) or not settings:
        return None
    supported = model_settings.get("lookup_settings", {}).get("supported_perils", [])
    perils = pd.DataFrame([{"peril_id": p["id"], "peril_correlation_group": int(p.get("peril_correlation_group", 0))}
                           for p in supported], columns=["peril_id", "peril_correlation_group"])
    values = pd.DataFrame(settings)
    if "peril_correlation_group" not in values.columns:
        raise ValueError("model settings: correlation_settings entries need a 'peril_correlation_group'. Fix: "
                         'write e.g. {"peril_correlation_group": 1, "damage_correlation_value": 0.7}.')
    values["peril_correlation_group"] = values["peril_correlation_group"].astype(int)
    for column in ("damage_correlation_value", "hazard_correlation_value"):
        values[column] = values[column].astype(float) if column in values.columns else 0.0
    if values["peril_correlation_group"].duplicated().any():
        raise ValueError("model settings: a peril_correlation_group appears twice in correlation_settings. Fix: "
                         "give each group one entry.")
    table = perils.merge(values[["peril_correlation_group", "damage_correlation_value", "hazard_correlation_value"]],
                         on="peril_correlation_group")
    return table if len(table) else None


def _group_fields(requested: Sequence[str] | None, location_columns, correlated: bool) -> list[str]:
    """Damage/hazard group columns: the requested ones that exist (unique), plus the correlation group."""
    fields = list(dict.fromkeys(requested or DEFAULT_GROUP_FIELDS))
    usable = [f for f in fields if f in location_columns or f in _ITEM_GROUP_FIELDS]
    for missing in set(fields) - set(usable):
        warnings.warn(f"group column {missing!r} is neither a location column nor an item column; ignored",
                      stacklevel=3)
    if correlated and "peril_correlation_group" not in usable:
        usable.append("peril_correlation_group")
    return usable


def group_hash(frame: pd.DataFrame, fields: Sequence[str]) -> np.ndarray:
    """The reference's group id: hash of the lower-cased, sorted ``fields`` of every row, >> 33, as uint32.

    Text columns are hashed as Python strings whatever their pandas dtype (a category of
    strings hashes like its values), so ids do not depend on how the frame was loaded.
    """
    from pandas.core.util.hashing import combine_hash_arrays

    renamed = {f: f.lower() for f in fields}
    columns = {}
    for field in sorted(fields, key=lambda f: renamed[f]):
        values = frame[field]
        if isinstance(values.dtype, pd.CategoricalDtype | pd.StringDtype) or values.dtype == object:
            columns[renamed[field]] = values
        else:
            columns[renamed[field]] = values.to_numpy()
    # hash_pandas_object(index=False) of the table of these columns (text as str): each column hashed
    # value by value (text: each distinct value once), the column hashes combined row by row
    hashes = [_text_hash(columns[name]) if isinstance(columns[name], pd.Series)
              else pd.util.hash_pandas_object(pd.Series(columns[name], dtype=columns[name].dtype), index=False)
              .to_numpy() for name in sorted(columns)]
    if not hashes:
        return np.zeros(0, dtype=np.uint32)
    combined = combine_hash_arrays(iter(hashes), len(hashes))
    return (combined >> np.uint64(33)).astype(np.uint32)


def _distinct_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(codes, ``astype(str)`` of each distinct value) of a column; None when distinct values may share a
    code but not a text (1 and 1.0, 0.0 and -0.0 in an object column). Missing values have code -1."""
    codes, uniques = pd.factorize(values)
    if values.dtype == object:
        types = {type(u) for u in uniques}
        if not (types <= {str} or (len(types) == 1 and not issubclass(types.pop(), float))):
            return None
    text = pd.Series(uniques, dtype=values.dtype).astype(str).astype(object).to_numpy()
    return codes, np.append(text, np.array([""], dtype=object))  # code -1 (missing) picks the last, replaced


def _as_str(values: pd.Series) -> np.ndarray:
    """``values.astype(str).astype(object)`` as an array, converting each distinct value once."""
    distinct = _distinct_text(values)
    if distinct is None:
        return values.astype(str).astype(object).to_numpy()
    codes, text = distinct
    result = text[codes]
    missing = codes < 0
    if missing.any():
        result[missing] = values[missing].astype(str).astype(object).to_numpy()
    return result


def _text_hash(values: pd.Series) -> np.ndarray:
    """``hash_array`` of ``values.astype(str)`` (as object), converting and hashing each distinct value once."""
    distinct = _distinct_text(values)
    if distinct is None:
        return pd.util.hash_array(values.astype(str).astype(object).to_numpy())
    codes, text = distinct
    hashes = pd.util.hash_array(text, categorize=False)[codes]
    missing = codes < 0
    if missing.any():
        hashes[missing] = pd.util.hash_array(values[missing].astype(str).astype(object).to_numpy(), categorize=False)
    return hashes


def build_gul_inputs(location: pd.DataFrame, keys: pd.DataFrame, *, model_settings: Mapping | None = None,
                     damage_group_fields: Sequence[str] | None = None,
                     hazard_group_fields: Sequence[str] | None = None,
                     do_disaggregation: bool = True) -> GulInputs:
    """Build the GUL items (see the module docstring for the rules).

    Parameters
    ----------
    location : pandas.DataFrame
        OED locations with ``loc_id`` (see :func:`perilflow.kernel.oed.load_exposure`).
    keys : pandas.DataFrame
        Lookup keys: ``loc_id``, ``peril_id``, ``coverage_type`` (or ``coverage_type_id``),
        ``area_peril_id`` (or ``areaperil_id``), ``vulnerability_id`` and optionally
        ``amplification_id``; with a ``status`` column only ``success`` rows are used.
    model_settings : mapping, optional
        Model settings; ``correlation_settings`` turns correlations on and
        ``data_settings.damage_group_fields`` / ``hazard_group_fields`` choose the group columns.
    damage_group_fields, hazard_group_fields : sequence of str, optional
        Override the group columns (default: the model settings', else PortNumber, AccNumber, LocNumber).
    do_disaggregation : bool, default True
        Split locations with ``NumberOfBuildings`` > 1 into one item per building.

    Returns
    -------
    GulInputs

    Raises
    ------
    ValueError
        If a required column is missing, no key matches a location, or no item has a positive TIV.
    """
    if "loc_id" not in location.columns:
        raise ValueError("location has no 'loc_id' column. Fix: load it with perilflow.kernel.oed.load_exposure.")
    keys = _prepare_keys(keys)
    correlation_table = peril_correlation_table(model_settings)
    correlated = correlation_table is not None
    data_settings = (model_settings or {}).get("data_settings", {}) or {}
    damage_fields = _group_fields(damage_group_fields or data_settings.get("damage_group_fields"),
                                  location.columns, correlated)
    hazard_fields = _group_fields(hazard_group_fields or data_settings.get("hazard_group_fields"),
                                  location.columns, correlated)

    sites = _insured_sites(location, damage_fields + hazard_fields)
    tiv_columns = [c for c in TIV_COLUMNS.values() if c in sites.columns]
    items = _inner_join_sites(keys, sites)
    if items.empty:
        raise ValueError("no key matches a location with a positive TIV (keys and locations share no loc_id). "
                         "Fix: run the lookup on these locations, and check their TIV columns.")
    if do_disaggregation:
        buildings = np.maximum(1, items["NumberOfBuildings"].to_numpy(dtype=float))
        items[tiv_columns] = items[tiv_columns].div(buildings, axis=0)
    items["tiv"] = _item_tiv(items, tiv_columns)
    positive = (items["tiv"] > 0).to_numpy()
    if not positive.all():
        items = items[positive]
    if items.empty:
        raise ValueError("every item has a zero TIV. Fix: give the locations a positive BuildingTIV, OtherTIV, "
                         "ContentsTIV or BITIV for the coverage types the lookup returns.")
    items = _split_buildings(items, do_disaggregation)

    items["item_id"] = items.groupby(["loc_id", "peril_id", "coverage_type_id", "building_id"], sort=False,
                                     observed=True).ngroup().to_numpy(np.int64) + 1
    items["coverage_id"] = items.groupby(["loc_id", "building_id", "coverage_type_id"], sort=False,
                                         observed=True).ngroup().to_numpy(np.int64) + 1
    if correlated:
        items = _inner_join_peril(items, correlation_table)
        if items.empty:
            raise ValueError("model settings: no item peril is in lookup_settings.supported_perils. Fix: list the "
                             "model's perils (with their peril_correlation_group) in supported_perils.")
    else:
        items[["peril_correlation_group", "damage_correlation_value", "hazard_correlation_value"]] = 0
    items["group_id"] = group_hash(items, damage_fields)
    items["hazard_group_id"] = (items["group_id"].to_numpy().copy() if list(hazard_fields) == list(damage_fields)
                                else group_hash(items, hazard_fields))

    columns = (["loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id", "tiv",
                "areaperil_id", "vulnerability_id"]
               + [c for c in _OPTIONAL_KEY_COLUMNS if c in items.columns]
               + ["group_id", "coverage_id", "item_id", "building_id", "risk_id", "NumberOfBuildings",
                  "NumberOfRisks", "IsAggregate", "LocPeril"] + tiv_columns
               + ["peril_correlation_group", "damage_correlation_value", "hazard_group_id",
                  "hazard_correlation_value"])
    first = ~items["item_id"].duplicated().to_numpy()
    if not first.all():
        items = items[first]
    if not items["item_id"].is_monotonic_increasing:
        items = items.sort_values("item_id", kind="stable")
    frame = pd.DataFrame({c: _plain(items[c]) for c in columns if c in items.columns}, copy=False)
    return GulInputs(frame=frame, correlated=correlated)


def _renumbered(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame.reset_index(drop=True)`` without copying the columns."""
    if frame.columns.duplicated().any():
        return frame.reset_index(drop=True)
    return pd.DataFrame({c: _plain(frame[c]) for c in frame.columns}, copy=False)


def _plain(values: pd.Series) -> pd.Series:
    """``values`` with a RangeIndex, not copied."""
    return pd.Series(values.array if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) else values.to_numpy(),
                     dtype=values.dtype, copy=False)


def _inner_join_sites(keys: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """``keys.merge(sites, on="loc_id", how="inner", suffixes=("", "_location"))`` for sites with one row per
    loc_id: each key row looked up by position, the columns taken once."""
    if (set(keys.columns) & set(sites.columns)) - {"loc_id"} or keys["loc_id"].dtype != np.int64 \
            or sites["loc_id"].dtype != np.int64 or keys.columns.duplicated().any():
        return keys.merge(sites, on="loc_id", how="inner", suffixes=("", "_location"))
    where = pd.Index(sites["loc_id"].to_numpy()).get_indexer(keys["loc_id"].to_numpy())
    found = where >= 0
    if not found.all():
        keys, where = keys[found], where[found]
    columns = {c: _plain(keys[c]) for c in keys.columns}
    for c in sites.columns:
        if c != "loc_id":
            values = sites[c]
            taken = (values.array.take(where) if isinstance(values.dtype, pd.api.extensions.ExtensionDtype)
                     else values.to_numpy().take(where))
            columns[c] = pd.Series(taken, dtype=values.dtype, copy=False)
    return pd.DataFrame(columns, copy=False)


def _inner_join_peril(items: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``items.merge(table, on="peril_id", how="inner")`` for a table with one row per peril, without copying
    the items when every peril is in the table."""
    extra = [c for c in table.columns if c != "peril_id"]
    if not table["peril_id"].is_unique or set(extra) & set(items.columns) or items["peril_id"].dtype != object:
        return items.merge(table, on="peril_id", how="inner")
    where = pd.Index(table["peril_id"]).get_indexer(items["peril_id"])
    found = where >= 0
    if not found.all():
        items, where = items[found], where[found]
    columns = {c: _plain(items[c]) for c in items.columns}
    columns.update({c: pd.Series(table[c].to_numpy()[where], dtype=table[c].dtype, copy=False) for c in extra})
    return pd.DataFrame(columns, copy=False)


def _prepare_keys(keys: pd.DataFrame) -> pd.DataFrame:
    """Successful keys with the item column names (coverage_type_id, areaperil_id)."""
    renames = {k: v for k, v in _KEY_RENAMES.items() if k in keys.columns}
    if set(renames.values()) & set(keys.columns) or keys.columns.duplicated().any():
        keys = keys.rename(columns=renames)
    else:  # the columns renamed without copying the frame
        keys = pd.DataFrame({renames.get(c, c): keys[c] for c in keys.columns}, copy=False)
    if "status" in keys.columns:
        keys = keys[keys["status"] == "success"]
    required = ["loc_id", "peril_id", "coverage_type_id", "areaperil_id", "vulnerability_id"]
    missing = [c for c in required if c not in keys.columns]
    if missing:
        raise ValueError(f"keys lack column(s) {', '.join(missing)}. Fix: give keys with loc_id, peril_id, "
                         "coverage_type, area_peril_id and vulnerability_id (as the lookup returns them).")
    keep = required + [c for c in _OPTIONAL_KEY_COLUMNS if c in keys.columns]
    keys = pd.DataFrame({c: _plain(keys[c]) for c in keep}, copy=False)  # columns not copied
    perils = keys["peril_id"]
    if not (perils.dtype == object and pd.api.types.infer_dtype(perils, skipna=False) == "string"):
        keys["peril_id"] = perils.astype(str)
    keys["coverage_type_id"] = keys["coverage_type_id"].astype(np.int64, copy=False)
    return keys


def _insured_sites(location: pd.DataFrame, group_fields: Sequence[str]) -> pd.DataFrame:
    """One row per loc_id (first row wins) of the locations with a non-zero TIV, with the columns items need.

    Only those columns are taken from ``location`` (not a copy of the whole frame).
    """
    if location.columns.duplicated().any():
        return _insured_sites_of_copy(location, group_fields)
    tiv_columns = [c for c in TIV_COLUMNS.values() if c in location.columns]
    if not tiv_columns:
        raise ValueError("location has no TIV column. Fix: add BuildingTIV, OtherTIV, ContentsTIV and/or BITIV.")
    wanted = ["loc_id", "PortNumber", "AccNumber", "LocNumber", "NumberOfBuildings", "IsAggregate", "LocPeril",
              "loc_idx", *tiv_columns]
    wanted += [f for f in group_fields if f not in wanted and f not in _ITEM_GROUP_FIELDS]
    n = len(location)
    columns = {}
    for column in dict.fromkeys(wanted):
        if column == "loc_idx":
            columns[column] = pd.Series(np.arange(n, dtype=np.int64), index=location.index)
        elif column == "IsAggregate":
            columns[column] = (location[column].fillna(0) if column in location
                               else pd.Series(0, index=location.index, dtype=np.int64))
        elif column == "NumberOfBuildings":
            columns[column] = (location[column].fillna(1) if column in location
                               else pd.Series(1, index=location.index, dtype=np.int64))
        elif column in tiv_columns:
            columns[column] = location[column].astype(float).fillna(0.0)
        elif column in location.columns:
            columns[column] = location[column]
    sites = pd.DataFrame(columns, copy=False)
    insured = np.zeros(n, dtype=bool)
    for column in tiv_columns:
        insured |= (columns[column] != 0).to_numpy()
    if not insured.all():
        sites = sites[insured]
    first = ~sites["loc_id"].duplicated().to_numpy()
    return sites if first.all() else sites[first]


def _insured_sites_of_copy(location: pd.DataFrame, group_fields: Sequence[str]) -> pd.DataFrame:
    """:func:`_insured_sites` for a location frame with repeated column names."""
    sites = location.copy()
    sites["loc_idx"] = np.arange(len(sites), dtype=np.int64)
    sites["IsAggregate"] = (sites["IsAggregate"].fillna(0) if "IsAggregate" in sites else 0)
    sites["NumberOfBuildings"] = (sites["NumberOfBuildings"].fillna(1) if "NumberOfBuildings" in sites else 1)
    tiv_columns = [c for c in TIV_COLUMNS.values() if c in sites.columns]
    if not tiv_columns:
        raise ValueError("location has no TIV column. Fix: add BuildingTIV, OtherTIV, ContentsTIV and/or BITIV.")
    sites[tiv_columns] = sites[tiv_columns].astype(float).fillna(0.0)
    sites = sites[(sites[tiv_columns] != 0).any(axis=1)]
    wanted = ["loc_id", "PortNumber", "AccNumber", "LocNumber", "NumberOfBuildings", "IsAggregate", "LocPeril",
              "loc_idx", *tiv_columns]
    wanted += [f for f in group_fields if f not in wanted and f not in _ITEM_GROUP_FIELDS]
    return sites[[c for c in dict.fromkeys(wanted) if c in sites.columns]].drop_duplicates("loc_id")


def _item_tiv(items: pd.DataFrame, tiv_columns: Sequence[str]) -> np.ndarray:
    """TIV of each item's coverage type (0 where the location has no column for it)."""
    tiv = np.zeros(len(items))
    coverage_type = items["coverage_type_id"].to_numpy()
    for coverage, column in TIV_COLUMNS.items():
        if column in tiv_columns:
            chosen = coverage_type == coverage
            tiv[chosen] = items[column].to_numpy(dtype=float)[chosen]
    return tiv


def _split_buildings(items: pd.DataFrame, do_disaggregation: bool) -> pd.DataFrame:
    """Repeat each item for building_id 1..NumberOfBuildings; set risk_id and NumberOfRisks."""
    if do_disaggregation:
        counts = np.maximum(1, items["NumberOfBuildings"].to_numpy(dtype=float)).astype(np.int64)
        if (counts == 1).all():
            items = _renumbered(items)
        else:
            items = items.iloc[np.repeat(np.arange(len(items)), counts)].reset_index(drop=True)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        items["building_id"] = np.arange(len(items)) - starts + 1
    else:
        items = _renumbered(items)
        items["building_id"] = 1
    aggregate = items["IsAggregate"].to_numpy() != 0
    items["risk_id"] = np.where(aggregate, items["building_id"], 1)
    risks = np.where(aggregate, items["NumberOfBuildings"].to_numpy(dtype=float), 1.0)
    items["NumberOfRisks"] = np.where(risks == 0, 1.0, risks)
    return items


# --------------------------------------------------------------------------- writing


def write_frame_csv(path: str | os.PathLike, frame: pd.DataFrame, float_format: str | None = None) -> Path:
    """Write a DataFrame as CSV atomically: to a temporary name in the same folder, then renamed.

    The text is what ``DataFrame.to_csv(index=False)`` writes (floats in their shortest
    form such as ``170300.0``, or with ``float_format``), but it is written by Arrow's csv
    writer: integer columns go to Arrow as they are, and float and text columns are turned
    into text once per *distinct* value (summary maps repeat a few thousand TIVs, perils and
    account numbers over millions of rows) and handed over as dictionary arrays. Frames whose
    text needs quoting fall back to pandas.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        columns = {name: _csv_text(frame[name], float_format) for name in frame.columns}
        if any(col is None for col in columns.values()):
            frame.to_csv(temporary, index=False, lineterminator="\n", float_format=float_format)
        else:
            table = pa.table({str(name): col for name, col in columns.items()})
            with open(temporary, "wb") as handle:
                handle.write((",".join(map(str, frame.columns)) + "\n").encode())
                pa_csv.write_csv(table, handle, write_options=pa_csv.WriteOptions(include_header=False,
                                                                                  quoting_style="none"))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _dictionary_text(codes: np.ndarray, texts: Sequence[str]):
    """An Arrow dictionary array of ``texts[codes]``, with code -1 (missing) as the empty text."""
    import pyarrow as pa

    codes = np.asarray(codes)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(texts), codes)
        texts = [*texts, ""]
    index_type = np.int32 if len(texts) < 2 ** 31 else np.int64
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(index_type, copy=False)),
                                          pa.array(list(texts), type=pa.large_string()))


def _csv_text(column: pd.Series, float_format: str | None):
    """One column for Arrow's csv writer as pandas' csv text would show it, or None when quoting is needed.

    Integers stay numbers; floats and text become a dictionary array of the text of each distinct
    value (``str`` of each, floats by bit pattern so ``-0.0`` keeps its sign), missing values empty.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        used = np.bincount(codes[codes >= 0], minlength=len(column.cat.categories)) > 0
        texts = [str(value) if seen else "" for value, seen in zip(column.cat.categories, used, strict=True)]
        if any(_NEEDS_QUOTES.search(text) for text in texts):
            return None
        return _dictionary_text(codes, texts)
    if isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
        if column.dtype.kind == "f":  # nullable floats: as float64 with NaN for the missing values
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # nullable integers, booleans, strings: str of each distinct value, missing ones empty
            codes, uniques = pd.factorize(column)
            texts = [str(value) for value in uniques]
            if any(_NEEDS_QUOTES.search(text) for text in texts):
                return None
            return _dictionary_text(codes, texts)
    else:
        values = column.to_numpy()
    if values.dtype.kind in "iu":
        return values
    if values.dtype.kind == "b":
        return _dictionary_text(values.astype(np.int8), ["False", "True"])
    if values.dtype.kind == "f":
        codes, bits = pd.factorize(values.view(f"i{values.itemsize}"))
        uniques = bits.view(values.dtype)
        if float_format is None:
            texts = uniques.astype(str).tolist()
        else:
            texts = [float_format % v for v in uniques]
        missing = np.isnan(uniques)
        if missing.any():
            texts = ["" if gap else text for text, gap in zip(texts, missing, strict=True)]
        return _dictionary_text(codes, texts)
    if values.dtype.kind == "O" and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        codes, uniques = pd.factorize(values)  # str values (None / NaN missing): one text per distinct value
        texts = [str(value) for value in uniques]
        if any(_NEEDS_QUOTES.search(text) for text in texts):
            return None
        return _dictionary_text(codes, texts)
    text = column.astype(object).where(column.notna(), "").astype(str).to_numpy(dtype=object)
    uniques = pd.unique(text)
    if any(_NEEDS_QUOTES.search(u) for u in uniques):
        return None
    return text


def write_gul_inputs(gul: GulInputs, output_dir: str | os.PathLike, file_format: str = "csv") -> dict[str, Path]:
    """Write items, coverages, gul_summary_map.csv (and correlations.csv, amplifications.csv).

    Parameters
    ----------
    gul : GulInputs
        The items, from :func:`build_gul_inputs`.
    output_dir : str or os.PathLike
        Folder to write into (created if missing).
    file_format : {"csv", "bin"}
        Format of items and coverages: csv, or the Oasis binary files (as the reference writes
        them by default; much faster to write and read). Summary maps are always csv.

    Returns
    -------
    dict of str to pathlib.Path
        File stem -> path written.
    """
    from perilflow.kernel.oasis.dtypes import COVERAGES_DTYPE, ITEMS_DTYPE
    from perilflow.kernel.oasis.files import write_bin, write_csv

    if file_format not in ("csv", "bin"):
        raise ValueError(f"file_format must be 'csv' or 'bin', got {file_format!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if file_format == "bin":
        tables = {"items": write_bin(out / "items.bin", _records(gul.items, ITEMS_DTYPE), "items"),
                  "coverages": write_bin(out / "coverages.bin", _records(gul.coverages, COVERAGES_DTYPE), "coverages")}
    else:
        tables = {"items": write_csv(out / "items.csv", _records(gul.items, ITEMS_DTYPE), "items"),
                  "coverages": write_csv(out / "coverages.csv", _records(gul.coverages, COVERAGES_DTYPE), "coverages")}
    written = {
        **tables,
        "gul_summary_map": write_frame_csv(out / "gul_summary_map.csv", gul.gul_summary_map),
    }
    if gul.correlated:
        written["correlations"] = write_frame_csv(out / "correlations.csv", gul.correlations, float_format="%.6f")
    if "amplification_id" in gul.frame.columns:
        written["amplifications"] = write_frame_csv(out / "amplifications.csv",
                                                    gul.frame[["item_id", "amplification_id"]])
    return written


def _records(frame: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
    """Copy the dtype's columns of ``frame`` into a structured array (types cast on write)."""
    out = np.empty(len(frame), dtype=[(name, np.float64 if dtype.fields[name][0].kind == "f" else np.int64)
                                      for name in dtype.names])
    for name in dtype.names:
        out[name] = frame[name].to_numpy()
    return out
