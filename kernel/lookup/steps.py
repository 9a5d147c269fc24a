"""Step types of the built-in keys lookup, with the reference's semantics.

A lookup configuration (``builtin_lookup_type: new_lookup``) defines named
steps under ``step_definition``::

    "vulnerability": {
        "type": "merge",
        "columns": ["peril_id", "coverage_type", "occupancycode"],
        "parameters": {"file_path": "%%KEYS_DATA_PATH%%/vulnerability_dict.csv",
                       "id_columns": ["vulnerability_id"]}
    }

and runs them in the order of ``strategy``. Each ``type`` has a *builder*
here, ``build_<type>(context, **parameters)``, called once when the lookup is
built; it reads any keys data file and returns a *step function* that takes
the locations frame and returns the transformed frame. Builders are listed in
:data:`STEP_BUILDERS`.

Step types (the reference's names and parameters):

``split_loc_perils_covered``
    One row per location and modelled peril: splits ``LocPerilsCovered`` (or
    ``PolPerilsCovered``) on ``;``, expands OED peril groups with ods-tools'
    peril table, keeps the perils in ``model_perils_covered``. A location left
    with no modelled peril keeps one row with status ``notatrisk``.
``rtree``
    ``area_peril_id`` (and any other attribute column) from the polygons in an
    area peril file that hold the location's point; optional nearest-cell
    fallback (see :mod:`perilflow.kernel.lookup.areaperil`).
``fixed_size_geo_grid`` / ``fixed_size_geo_grid_multi_peril``
    ``area_peril_id`` from a regular lon/lat grid.
``merge``
    Left join with a csv or parquet dictionary (e.g. vulnerabilities).
``simple_pivot``
    One copy of every row per pivot, with new or renamed columns.
``combine``
    Several child steps trying to set the same ids, in turn (``or``) or in
    sequence (``and``).
``interval_to_index``
    Index of a value among sorted interval bounds.

Columns are found case-insensitively. Ids that are missing or not positive
become ``-1`` (:func:`~perilflow.kernel.lookup.common.set_id_columns`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.lookup.areaperil import AREA_FILE_TYPES, AreaPerilIndex, read_area_peril_file
from perilflow.kernel.lookup.common import (
    STATUS_NOTATRISK,
    UNKNOWN_ID,
    LookupConfigError,
    LookupDataError,
    set_id_columns,
)

__all__ = [
    "STEP_BUILDERS",
    "BuiltStep",
    "StepContext",
    "StepFunction",
    "build_combine",
    "build_fixed_size_geo_grid",
    "build_fixed_size_geo_grid_multi_peril",
    "build_interval_to_index",
    "build_merge",
    "build_rtree",
    "build_simple_pivot",
    "build_split_loc_perils_covered",
    "grid_area_peril_ids",
    "peril_groups_table",
]

#: A built step: takes the locations frame, returns the transformed frame.
StepFunction = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class BuiltStep:
    """A step ready to run: its function and the columns it needs."""

    name: str
    function: StepFunction
    columns: frozenset[str]


@dataclass
class StepContext:
    """What a builder may use besides its parameters.

    Attributes
    ----------
    step : str
        Name of the step being built (its key in ``step_definition``).
    source : str
        The lookup configuration, for messages (its file path, or a label).
    config_dir : Path
        Folder relative paths are taken from.
    placeholders : dict of str to str
        Values of ``%%NAME%%`` placeholders, by lower-case name
        (``keys_data_path`` always among them).
    build_child : callable
        ``build_child(name) -> BuiltStep`` builds another step of the
        configuration (used by ``combine``).
    """

    step: str
    source: str
    config_dir: Path
    placeholders: dict[str, str]
    build_child: Callable[[str], BuiltStep]

    def error(self, problem: str, fix: str | None = None) -> LookupConfigError:
        """A configuration error about this step."""
        return LookupConfigError(problem, source=self.source, step=self.step, fix=fix)

    def resolve_path(self, value: Any, parameter: str = "file_path") -> Path:
        """Substitute ``%%NAME%%`` placeholders in ``value`` and make it absolute.

        Relative paths are taken from the configuration's folder.
        """
        if not isinstance(value, str | Path) or not str(value):
            raise self.error(f"parameter '{parameter}' must be a file path, not {value!r}")

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name.lower() not in self.placeholders:
                raise self.error(
                    f"parameter '{parameter}' uses placeholder %%{name}%%, which the configuration does not define",
                    fix=f"add a '{name.lower()}' key to the lookup configuration or use %%KEYS_DATA_PATH%%",
                )
            return self.placeholders[name.lower()]

        text = re.sub(r"%%(.+?)%%", substitute, str(value))
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.config_dir / path).resolve()


# --------------------------------------------------------------------------- helpers


def _find_column(frame: pd.DataFrame, name: str, step: str, why: str = "") -> str:
    """The column of ``frame`` called ``name``, ignoring case; LookupDataError if absent."""
    if name in frame.columns:
        return name
    for column in frame.columns:
        if str(column).lower() == name.lower():
            return column
    raise LookupDataError(
        f"no column '{name}' in the locations{why}",
        source="location",
        step=step,
        fix=f"list '{name}' in the step's 'columns' and make sure the location file has it "
        "(or that an earlier step of 'strategy' creates it)",
    )


def _id_column_list(ctx: StepContext, value: Any, parameter: str = "id_columns") -> list[str]:
    """Check that ``value`` is a list of column names."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise ctx.error(f"parameter '{parameter}' must be a list of column names, not {value!r}")
    return list(value)


@functools.cache
def peril_groups_table() -> pd.DataFrame:
    """OED peril codes and the single perils each stands for (the reference's ``get_peril_groups_df``).

    Built from ods-tools' latest OED schema: every single peril maps to
    itself, then every group code (``Grouped PerilCode`` = Yes) to each peril
    it covers.

    Returns
    -------
    pandas.DataFrame
        Columns ``peril_group_id`` and ``peril_id``. Do not modify (cached).
    """
    from ods_tools.oed import OedSchema

    perils = OedSchema.from_oed_schema_info("latest version").schema["perils"]
    singles = [code for code, info in perils["info"].items() if info["Grouped PerilCode"] != "Yes"]
    groups = [code for code, info in perils["info"].items() if info["Grouped PerilCode"] == "Yes"]
    pairs = [(code, code) for code in singles]
    pairs += [(group, peril) for group in groups for peril in perils["covered"][group]]
    return pd.DataFrame(pairs, columns=["peril_group_id", "peril_id"])


# --------------------------------------------------------------------------- split_loc_perils_covered


def build_split_loc_perils_covered(ctx: StepContext, model_perils_covered: Sequence[str] | None = None) -> StepFunction:
    """Build the step that gives one row per location and modelled peril.

    Parameters
    ----------
    ctx : StepContext
    model_perils_covered : list of str, optional
        Single OED peril codes the model covers (e.g. ``["WTC", "WSS"]``). If
        empty, every peril is kept.

    Returns
    -------
    StepFunction
        Splits ``LocPerilsCovered`` (else ``PolPerilsCovered``) on ``;``, maps
        each code to its perils with :func:`peril_groups_table` (codes are
        taken literally: no trimming; unknown codes give nothing), keeps the
        modelled perils and adds ``peril_id`` and ``peril_group_id``. As in the
        reference, a peril reached through two codes (``"WW1;WTC"``) appears
        twice. Locations with no modelled peril keep one row with no
        ``peril_id``, status ``notatrisk`` and message
        ``"<LocPerilsCovered> have no perils modelled"``.
    """
    if model_perils_covered is not None:
        model_perils = _id_column_list(ctx, model_perils_covered, "model_perils_covered")
    else:
        model_perils = []
    groups = peril_groups_table()

    def split_loc_perils_covered(locations: pd.DataFrame) -> pd.DataFrame:
        column = next(
            (c for c in locations.columns if str(c).lower() in ("locperilscovered", "polperilscovered")), None
        )
        if column is None:
            raise LookupDataError(
                "no LocPerilsCovered (or PolPerilsCovered) column in the locations",
                source="location",
                step=ctx.step,
                fix="add LocPerilsCovered to the location file and list 'locperilscovered' in the step's 'columns'",
            )
        peril_rows = _peril_rows(locations, column, groups)
        if peril_rows is None:
            codes = _split_text(locations[column].astype(object), ";")
            exploded = locations.assign(peril_group_id=codes).explode("peril_group_id").drop_duplicates()
            on = [c for c in groups.columns if c in exploded.columns]
            peril_rows = exploded.merge(groups, on=on)
        if model_perils:
            peril_rows = peril_rows[peril_rows["peril_id"].isin(model_perils)]
        not_covered = locations[~locations["loc_id"].isin(peril_rows["loc_id"])].copy()
        if not not_covered.empty:
            not_covered["status"] = STATUS_NOTATRISK
            not_covered["message"] = not_covered[column].astype(str) + " have no perils modelled"
            peril_rows = pd.concat([peril_rows, not_covered], ignore_index=True)
        return peril_rows.reset_index(drop=True)

    return split_loc_perils_covered


def _peril_rows(locations: pd.DataFrame, column: str, groups: pd.DataFrame) -> pd.DataFrame | None:
    """``locations`` with each peril code of ``column`` exploded, deduplicated and joined to ``groups``
    (one row per location and peril, in the order the explode, ``drop_duplicates`` and inner merge of
    :func:`build_split_loc_perils_covered` give), built from the distinct texts of ``column``; None when
    that shortcut does not apply (repeated location rows, columns named like the groups' columns)."""
    if ("peril_group_id" in locations.columns or "peril_id" in locations.columns
            or locations.columns.duplicated().any() or list(groups.columns) != ["peril_group_id", "peril_id"]
            or locations.duplicated().any()):
        return None
    codes, uniques = pd.factorize(locations[column].astype(object))
    if not all(isinstance(text, str) for text in uniques) or groups["peril_group_id"].isna().any():
        return None
    covered: dict[str, list[str]] = {}
    for group, peril in zip(groups["peril_group_id"], groups["peril_id"], strict=True):
        covered.setdefault(group, []).append(peril)
    pair_groups: list[str] = []
    pair_perils: list[str] = []
    starts = np.zeros(len(uniques) + 1, dtype=np.int64)  # pairs of distinct text i: starts[i]:starts[i + 1]
    for i, text in enumerate(uniques):
        for code in dict.fromkeys(text.split(";")):  # a code repeated in one cell is one row
            for peril in covered.get(code, ()):
                pair_groups.append(code)
                pair_perils.append(peril)
        starts[i + 1] = len(pair_groups)
    counts = np.append(np.diff(starts), 0)[codes]  # missing cells (code -1) match no group
    rows = np.repeat(np.arange(len(locations), dtype=np.int64), counts)
    within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    pairs = np.repeat(starts[:-1][np.maximum(codes, 0)], counts) + within
    result = {c: locations[c].take(rows).reset_index(drop=True) for c in locations.columns}
    result["peril_group_id"] = pd.Series(np.array(pair_groups, dtype=object)[pairs] if len(pair_groups)
                                         else np.zeros(0, dtype=object), dtype=object)
    result["peril_id"] = pd.Series(np.array(pair_perils, dtype=object)[pairs] if len(pair_perils)
                                   else np.zeros(0, dtype=object), dtype=object)
    return pd.DataFrame(result, copy=False)


def _split_text(values: pd.Series, separator: str) -> pd.Series:
    """``values.str.split(separator)`` (an object Series), splitting each distinct text once."""
    codes, uniques = pd.factorize(values)
    if not all(isinstance(text, str) for text in uniques):
        return values.str.split(separator)
    parts = np.empty(len(uniques) + 1, dtype=object)
    for i, text in enumerate(uniques):
        parts[i] = text.split(separator)
    parts[-1] = np.nan
    result = parts[codes]
    missing = codes < 0
    result[missing] = values.to_numpy()[missing]  # None, NaN, ... as they are
    return pd.Series(result, index=values.index, dtype=object)


# --------------------------------------------------------------------------- rtree


def build_rtree(
    ctx: StepContext,
    file_path: str,
    file_type: str,
    id_columns: Sequence[str],
    area_peril_read_params: Mapping[str, Any] | None = None,
    nearest_neighbor_min_distance: float = -1,
) -> StepFunction:
    """Build the step that finds each location's area peril polygon.

    Parameters
    ----------
    ctx : StepContext
    file_path : str
        Area peril file (``%%KEYS_DATA_PATH%%`` allowed). See
        :func:`~perilflow.kernel.lookup.areaperil.read_area_peril_file`.
    file_type : {"parquet", "csv"}
        Its format.
    id_columns : list of str
        Columns made id columns afterwards (usually ``["area_peril_id"]``).
    area_peril_read_params : dict, optional
        Extra keyword arguments for the file reader.
    nearest_neighbor_min_distance : float, default -1
        If positive, locations outside every polygon take the polygon with the
        nearest centroid within this many metres.

    Returns
    -------
    StepFunction
        Left-joins the locations (columns ``latitude``, ``longitude``) with the
        polygons they intersect. If the file has a ``peril_id`` column, each
        location is matched only against its peril's polygons and locations
        of other perils pass through unmatched.
    """
    if file_type not in AREA_FILE_TYPES:
        raise ctx.error(
            f"file_type '{file_type}' is not supported",
            fix=f"use one of {list(AREA_FILE_TYPES)}",
        )
    ids = _id_column_list(ctx, id_columns)
    try:
        max_distance = float(nearest_neighbor_min_distance)
    except (TypeError, ValueError):
        raise ctx.error(
            f"nearest_neighbor_min_distance must be a number of metres, not {nearest_neighbor_min_distance!r}"
        ) from None
    if area_peril_read_params is not None and not isinstance(area_peril_read_params, Mapping):
        raise ctx.error("area_peril_read_params must be an object of reader keyword arguments")
    path = ctx.resolve_path(file_path)
    attributes, geometries = read_area_peril_file(path, file_type, dict(area_peril_read_params or {}), step=ctx.step)

    if "peril_id" in attributes.columns:
        indexes = {}
        area_perils = attributes["peril_id"].astype(str)
        for peril in np.unique(area_perils[attributes["peril_id"].notna()]):
            mask = (area_perils == peril).to_numpy()
            indexes[peril] = AreaPerilIndex(
                attributes.loc[mask].drop(columns=["peril_id"]), geometries[mask], max_distance
            )
    else:
        indexes = None
        index = AreaPerilIndex(attributes, geometries, max_distance)

    def rtree(locations: pd.DataFrame) -> pd.DataFrame:
        lat = _find_column(locations, "latitude", ctx.step)
        lon = _find_column(locations, "longitude", ctx.step)
        if indexes is None:
            joined = index.join(locations, lon_column=lon, lat_column=lat)
        else:
            peril = _find_column(
                locations, "peril_id", ctx.step, " (the area peril file has a peril_id column); "
                "run split_loc_perils_covered before this step"
            )
            location_perils = locations[peril].astype(str).where(locations[peril].notna())
            parts = [locations[~location_perils.isin(list(indexes))]]
            points = _location_points(locations, lon, lat)  # made once for every peril's join
            for peril_id, peril_index in indexes.items():
                mask = (location_perils == peril_id).to_numpy()
                parts.append(peril_index.join(locations[mask], lon_column=lon, lat_column=lat, points=points[mask]))
            joined = pd.concat(parts, ignore_index=True)
        return set_id_columns(joined, ids)

    return rtree


def _location_points(locations: pd.DataFrame, lon: str, lat: str) -> np.ndarray:
    """``shapely.points`` of the rows' coordinates (None where one is missing), each distinct point made once
    (a location has a row per peril)."""
    import shapely

    x = pd.to_numeric(locations[lon], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(locations[lat], errors="coerce").to_numpy(dtype=float)
    points = np.full(len(x), None, dtype=object)
    present = ~(np.isnan(x) | np.isnan(y))
    pairs = np.empty(int(present.sum()), dtype=np.complex128)
    pairs.real, pairs.imag = x[present], y[present]
    codes, distinct = pd.factorize(pairs)
    points[present] = shapely.points(distinct.real, distinct.imag)[codes]
    return points


# --------------------------------------------------------------------------- fixed size geo grid


@dataclass(frozen=True)
class _Grid:
    """A regular lon/lat grid (the ``fixed_size_geo_grid`` parameters)."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    arc_size: float
    lat_reverse: bool = False
    lon_reverse: bool = False
    lon_first: bool = False

    @property
    def n_lat(self) -> int:
        """Cells along latitude (Python ``round``, as the reference)."""
        return round((self.lat_max - self.lat_min) / self.arc_size)

    @property
    def n_lon(self) -> int:
        """Cells along longitude."""
        return round((self.lon_max - self.lon_min) / self.arc_size)


def _grid(ctx: StepContext, parameters: Mapping[str, Any], where: str = "") -> _Grid:
    """Check ``fixed_size_geo_grid`` parameters and return the grid."""
    numbers = {}
    for name in ("lat_min", "lat_max", "lon_min", "lon_max", "arc_size"):
        if name not in parameters:
            raise ctx.error(
                f"missing parameter '{name}'{where}", fix="give lat_min, lat_max, lon_min, lon_max and arc_size"
            )
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ctx.error(f"parameter '{name}'{where} must be a number, not {value!r}")
        numbers[name] = float(value)
    flags = {}
    for name in ("lat_reverse", "lon_reverse", "lon_first"):
        value = parameters.get(name, False)
        if not isinstance(value, bool):
            raise ctx.error(f"parameter '{name}'{where} must be true or false, not {value!r}")
        flags[name] = value
    unknown = set(parameters) - set(numbers) - set(flags)
    if unknown:
        raise ctx.error(f"unknown parameter(s) {sorted(unknown)}{where}")
    grid = _Grid(**numbers, **flags)
    if grid.arc_size <= 0 or grid.lat_min >= grid.lat_max or grid.lon_min >= grid.lon_max:
        raise ctx.error(
            f"the grid{where} is empty: need arc_size > 0, lat_min < lat_max and lon_min < lon_max",
        )
    return grid


def grid_area_peril_ids(grid: _Grid, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Area peril ids of points on a regular grid (the reference's ``fixed_size_geo_grid``).

    Only points strictly inside the grid get an id; the others (and missing
    coordinates) get ``-1``. With cell indices ``i = floor((lat - lat_min) /
    arc)`` (``floor((lat_max - lat) / arc)`` if ``lat_reverse``) and ``j``
    likewise for longitude, the id is ``j * n_lat + i + 1``, or
    ``j + i * n_lon + 1`` with ``lon_first``.

    Parameters
    ----------
    grid : _Grid
    lat, lon : numpy.ndarray
        Coordinates in degrees.

    Returns
    -------
    numpy.ndarray
        ``int64`` ids.
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    inside = (grid.lat_min < lat) & (lat < grid.lat_max) & (grid.lon_min < lon) & (lon < grid.lon_max)
    lat_offset = (grid.lat_max - lat) if grid.lat_reverse else (lat - grid.lat_min)
    lon_offset = (grid.lon_max - lon) if grid.lon_reverse else (lon - grid.lon_min)
    with np.errstate(invalid="ignore"):
        lat_index = np.floor(np.where(inside, lat_offset, 0.0) / grid.arc_size).astype(np.int64)
        lon_index = np.floor(np.where(inside, lon_offset, 0.0) / grid.arc_size).astype(np.int64)
    if grid.lon_first:
        ids = lon_index + lat_index * grid.n_lon + 1
    else:
        ids = lon_index * grid.n_lat + lat_index + 1
    return np.where(inside, ids, UNKNOWN_ID)


def build_fixed_size_geo_grid(ctx: StepContext, **parameters: Any) -> StepFunction:
    """Build the step that gives ``area_peril_id`` from a regular lon/lat grid.

    Parameters
    ----------
    ctx : StepContext
    **parameters
        ``lat_min``, ``lat_max``, ``lon_min``, ``lon_max``, ``arc_size``
        (degrees) and the flags ``lat_reverse``, ``lon_reverse``,
        ``lon_first`` (default false). See :func:`grid_area_peril_ids`.

    Returns
    -------
    StepFunction
        Sets ``area_peril_id`` from columns ``latitude`` and ``longitude``.
    """
    grid = _grid(ctx, parameters)

    def fixed_size_geo_grid(locations: pd.DataFrame) -> pd.DataFrame:
        lat = pd.to_numeric(locations[_find_column(locations, "latitude", ctx.step)], errors="coerce")
        lon = pd.to_numeric(locations[_find_column(locations, "longitude", ctx.step)], errors="coerce")
        locations = locations.copy()
        locations["area_peril_id"] = grid_area_peril_ids(grid, lat.to_numpy(dtype=float), lon.to_numpy(dtype=float))
        return locations

    return fixed_size_geo_grid


def build_fixed_size_geo_grid_multi_peril(
    ctx: StepContext, perils_dict: Mapping[str, Mapping[str, Any]]
) -> StepFunction:
    """Build the step with one regular grid per peril.

    Parameters
    ----------
    ctx : StepContext
    perils_dict : dict
        ``{peril_id: {fixed_size_geo_grid parameters}}``.

    Returns
    -------
    StepFunction
        Rows of the k-th peril (in ``perils_dict`` order) get their grid id plus
        ``k * (n_lon * n_lat of the first grid)`` (the reference offsets every
        peril by the size of the *first* grid); rows of other perils get ``-1``.
    """
    if not isinstance(perils_dict, Mapping) or not perils_dict:
        raise ctx.error("perils_dict must be a non-empty object {peril_id: {grid parameters}}")
    grids = {}
    for peril, parameters in perils_dict.items():
        if not isinstance(parameters, Mapping):
            raise ctx.error(f"perils_dict['{peril}'] must be an object of grid parameters")
        grids[peril] = _grid(ctx, parameters, f" of peril '{peril}'")
    first = next(iter(grids.values()))
    offset_step = first.n_lon * first.n_lat

    def fixed_size_geo_grid_multi_peril(locations: pd.DataFrame) -> pd.DataFrame:
        lat = pd.to_numeric(locations[_find_column(locations, "latitude", ctx.step)], errors="coerce").to_numpy(float)
        lon = pd.to_numeric(locations[_find_column(locations, "longitude", ctx.step)], errors="coerce").to_numpy(float)
        perils = locations[_find_column(locations, "peril_id", ctx.step)].to_numpy(dtype=object)
        area_peril_id = np.full(len(locations), UNKNOWN_ID, dtype=np.int64)
        for k, (peril, grid) in enumerate(grids.items()):
            mask = perils == peril
            ids = grid_area_peril_ids(grid, lat[mask], lon[mask])
            area_peril_id[mask] = np.where(ids != UNKNOWN_ID, ids + k * offset_step, UNKNOWN_ID)
        locations = locations.copy()
        locations["area_peril_id"] = area_peril_id
        return locations

    return fixed_size_geo_grid_multi_peril


# --------------------------------------------------------------------------- merge


def _read_table(ctx: StepContext, path: Path, read_params: Mapping[str, Any]) -> pd.DataFrame:
    """Read a csv or parquet dictionary file with lower-case column names."""
    if not path.is_file():
        raise LookupConfigError(
            "keys data file not found",
            source=path,
            step=ctx.step,
            fix="check 'file_path' in the step parameters and the keys data path (keys_data_path)",
        )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path, **read_params)
        else:
            table = pd.read_csv(path, **read_params)
    except TypeError as error:
        raise ctx.error(
            f"bad reader parameter for {path} ({error})", fix="remove it from the step parameters"
        ) from None
    table = table.reset_index(drop=True)
    table.columns = [str(column).lower() for column in table.columns]
    return table


def _plain_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with categorical ``columns`` turned into their category values' dtype."""
    plain = {}
    for column in columns:
        dtype = frame[column].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            plain[column] = frame[column].astype(dtype.categories.dtype)
    return frame.assign(**plain) if plain else frame


def build_merge(
    ctx: StepContext, file_path: str, id_columns: Sequence[str] = (), **read_params: Any
) -> StepFunction:
    """Build the step that left-joins the locations with a dictionary file.

    Parameters
    ----------
    ctx : StepContext
    file_path : str
        csv file (or parquet, by a ``.parquet``/``.pq`` suffix), e.g.
        ``%%KEYS_DATA_PATH%%/vulnerability_dict.csv``. Its column names are
        lower-cased.
    id_columns : list of str
        Columns made id columns after the join (unmatched rows get ``-1``).
    **read_params
        Passed to :func:`pandas.read_csv` (or :func:`pandas.read_parquet`).

    Returns
    -------
    StepFunction
        Joins on every column the two share (names compared ignoring case).
    """
    ids = _id_column_list(ctx, id_columns)
    path = ctx.resolve_path(file_path)
    table = _read_table(ctx, path, read_params)

    def merge(locations: pd.DataFrame) -> pd.DataFrame:
        spelling = {str(column).lower(): column for column in locations.columns}
        right = table.rename(columns={c: spelling[c] for c in table.columns if c in spelling})
        on = [column for column in right.columns if column in locations.columns]
        if not on:
            raise LookupDataError(
                f"the locations share no column with {path.name} (its columns: {list(table.columns)})",
                source=path,
                step=ctx.step,
                fix="list the join columns in the step's 'columns' and make sure the locations have them",
            )
        try:
            joined = _plain_keys(locations, on).merge(_plain_keys(right, on), how="left", on=on)
        except ValueError as error:
            kinds = {column: (str(locations[column].dtype), str(right[column].dtype)) for column in on}
            raise LookupDataError(
                f"cannot join the locations with {path.name} on {on}: {error} (location vs file dtypes: {kinds})",
                source=path,
                step=ctx.step,
                fix="make the join columns hold the same kind of values (numbers or text) in both",
            ) from None
        return set_id_columns(joined, ids)

    return merge


# --------------------------------------------------------------------------- simple_pivot


def build_simple_pivot(
    ctx: StepContext, pivots: Sequence[Mapping[str, Any]], remove_pivoted_col: bool = True
) -> StepFunction:
    """Build the step that copies every row once per pivot.

    Parameters
    ----------
    ctx : StepContext
    pivots : list of dict
        Each may have ``"on": {old_column: new_column}`` (copy a column under a
        new name) and ``"new_cols": {column: value}`` (set a constant).
    remove_pivoted_col : bool, default True
        Drop the ``old_column`` columns of every ``on`` afterwards.

    Returns
    -------
    StepFunction
        The copies, one block per pivot, stacked in pivot order.
    """
    if isinstance(pivots, str | bytes) or not isinstance(pivots, Sequence) or not pivots:
        raise ctx.error("parameter 'pivots' must be a non-empty list of objects with 'on' and/or 'new_cols'")
    for number, pivot in enumerate(pivots, start=1):
        if not isinstance(pivot, Mapping) or set(pivot) - {"on", "new_cols"}:
            raise ctx.error(f"pivot {number} must be an object with only 'on' and/or 'new_cols', not {pivot!r}")
        for key in ("on", "new_cols"):
            if not isinstance(pivot.get(key, {}), Mapping):
                raise ctx.error(f"pivot {number}: '{key}' must be an object")

    def simple_pivot(locations: pd.DataFrame) -> pd.DataFrame:
        blocks = []
        pivoted = set()
        for pivot in pivots:
            block = locations.copy()
            for old, new in pivot.get("on", {}).items():
                block[new] = block[_find_column(block, old, ctx.step)]
                pivoted.add(_find_column(block, old, ctx.step))
            for column, value in pivot.get("new_cols", {}).items():
                block[column] = value
            blocks.append(block)
        stacked = pd.concat(blocks, ignore_index=True)
        if remove_pivoted_col and pivoted:
            stacked = stacked.drop(columns=sorted(pivoted))
        return stacked

    return simple_pivot


# --------------------------------------------------------------------------- combine


def build_combine(
    ctx: StepContext, id_columns: Sequence[Any], strategy: Sequence[str], logical_type: str = "or"
) -> StepFunction:
    """Build a step that runs several child steps aiming at the same ids.

    Parameters
    ----------
    ctx : StepContext
    id_columns : list
        ``or``: the id columns (a row is done once any is not ``-1``).
        ``and``: one list of id columns per child step.
    strategy : list of str
        Child step names (keys of ``step_definition``).
    logical_type : {"or", "and"}
        ``or``: each child runs on the rows the previous ones left without an
        id. ``and``: each child runs on the rows the previous one gave an id;
        rows it fails are set aside (with the columns the combine step
        started with).

    Returns
    -------
    StepFunction

    Notes
    -----
    A child whose own ``columns`` are not all present is skipped. (The
    reference means to do this but compares the *combine* step's columns,
    which are always present, so it never skips.)
    """
    if isinstance(strategy, str) or not isinstance(strategy, Sequence) or not strategy:
        raise ctx.error("parameter 'strategy' must be a non-empty list of step names")
    kind = str(logical_type).lower()
    if kind not in ("or", "and"):
        raise ctx.error(f"unsupported logical_type '{logical_type}'", fix="use 'or' or 'and'")
    if kind == "or":
        or_ids = _id_column_list(ctx, id_columns)
    else:
        if isinstance(id_columns, str) or not isinstance(id_columns, Sequence) or len(id_columns) != len(strategy):
            raise ctx.error(
                "with logical_type 'and', 'id_columns' must hold one list of id columns per child step",
                fix=f"give {len(strategy)} lists, e.g. [[\"vuln_id_car\"], [\"vulnerability_id\"]]",
            )
        and_ids = [_id_column_list(ctx, item) for item in id_columns]
    children = [ctx.build_child(name) for name in strategy]

    def combine_or(locations: pd.DataFrame) -> pd.DataFrame:
        initial = list(locations.columns)
        done = []
        for child in children:
            if not _has_columns(locations, child.columns):
                continue
            result = set_id_columns(child.function(locations), or_ids)
            valid = (result[or_ids] != UNKNOWN_ID).any(axis=1).to_numpy(dtype=bool)
            done.append(result.loc[valid])
            locations = result.loc[~valid, [c for c in initial if c in result.columns]]
            if locations.empty:
                break
        done.append(locations)
        return set_id_columns(pd.concat(done, ignore_index=True), or_ids)

    def combine_and(locations: pd.DataFrame) -> pd.DataFrame:
        initial = list(locations.columns)
        done = []
        for child, ids in zip(children, and_ids, strict=True):
            if not _has_columns(locations, child.columns):
                continue
            result = set_id_columns(child.function(locations), ids)
            valid = (result[ids] != UNKNOWN_ID).any(axis=1).to_numpy(dtype=bool)
            done.append(result.loc[~valid, [c for c in initial if c in result.columns]])
            locations = result.loc[valid]
            if locations.empty:
                break
        done.append(locations)
        return set_id_columns(pd.concat(done, ignore_index=True), and_ids[-1])

    return combine_or if kind == "or" else combine_and


def _has_columns(frame: pd.DataFrame, columns: frozenset[str]) -> bool:
    """Whether every name in ``columns`` is a column of ``frame`` (ignoring case)."""
    present = {str(column).lower() for column in frame.columns}
    return all(column.lower() in present for column in columns)


# --------------------------------------------------------------------------- interval_to_index


def build_interval_to_index(
    ctx: StepContext,
    value_column_name: str,
    sorted_array: Sequence[float] | str,
    index_column_name: str | None = None,
    side: str = "left",
) -> StepFunction:
    """Build the step that maps a value to its interval index.

    Parameters
    ----------
    ctx : StepContext
    value_column_name : str
        Column holding the values.
    sorted_array : list of float or str
        Sorted interval bounds, or a file with one bound per line.
    index_column_name : str, optional
        Output column, default ``<value_column_name>_idx``.
    side : {"left", "right"}
        Which index a value equal to a bound gets (:func:`numpy.searchsorted`).

    Returns
    -------
    StepFunction
        Adds the index column; missing values stay missing.
    """
    if side not in ("left", "right"):
        raise ctx.error(f"side must be 'left' or 'right', not {side!r}")
    if isinstance(sorted_array, str):
        path = ctx.resolve_path(sorted_array, "sorted_array")
        if not path.is_file():
            raise LookupConfigError("interval file not found", source=path, step=ctx.step, fix="check 'sorted_array'")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        try:
            bounds = np.array([float(line) for line in lines if line], dtype=float)
        except ValueError as error:
            raise LookupConfigError(
                f"interval bounds must be numbers, one per line ({error})", source=path, step=ctx.step
            ) from None
    elif isinstance(sorted_array, Sequence):
        bounds = np.asarray(sorted_array, dtype=float)
    else:
        raise ctx.error("sorted_array must be a list of sorted bounds or the path of a file holding them")
    if np.any(np.diff(bounds) < 0):
        raise ctx.error("sorted_array must be sorted in increasing order")
    output = index_column_name or f"{value_column_name}_idx"

    def interval_to_index(locations: pd.DataFrame) -> pd.DataFrame:
        values = pd.to_numeric(locations[_find_column(locations, value_column_name, ctx.step)], errors="coerce")
        index = pd.Series(np.searchsorted(bounds, values.to_numpy(dtype=float), side=side), index=locations.index)
        locations = locations.copy()
        locations[output] = index.where(values.notna())
        return locations

    return interval_to_index


#: Builders by step ``type``.
STEP_BUILDERS: dict[str, Callable[..., StepFunction]] = {
    "split_loc_perils_covered": build_split_loc_perils_covered,
    "rtree": build_rtree,
    "fixed_size_geo_grid": build_fixed_size_geo_grid,
    "fixed_size_geo_grid_multi_peril": build_fixed_size_geo_grid_multi_peril,
    "merge": build_merge,
    "simple_pivot": build_simple_pivot,
    "combine": build_combine,
    "interval_to_index": build_interval_to_index,
}
