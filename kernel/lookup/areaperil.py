"""Area peril polygons: reading them, and finding the polygons that hold each location.

This is the geometry behind the ``rtree`` lookup step (the reference builds it
with geopandas: ``gpd.read_<file_type>`` then ``gpd.sjoin(points, polygons,
how='left')``, predicate ``intersects``; here shapely's vectorised STRtree does
the same join).

Area peril files
----------------
* ``parquet``: a GeoParquet file (as PiWind's ``areaperil_dict.parquet``,
  written by geopandas): a WKB geometry column (the ``geo`` metadata names it,
  otherwise ``geometry``) and attribute columns such as ``peril_id`` and
  ``area_peril_id``.
* ``csv``: either a ``geometry`` column holding WKT, or cell corners in column
  pairs ``LON1, LAT1, LON2, LAT2, ...`` (PiWind's ``areaperil_dict.csv``); the
  polygon is the convex hull of the corners, so their order does not matter
  (PiWind lists a cell's corners as SW, NW, SE, NE). The reference reads only
  geopandas formats; the csv form is a Perilflow convenience.

Attribute column names are lower-cased.

Matching
--------
A location matches every polygon its point intersects, borders included, as
in the reference: a point on the edge shared by two cells matches both and
yields two rows. A point that matches nothing may take the nearest cell
(see :class:`AreaPerilIndex`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from perilflow.kernel.lookup.common import LookupConfigError

__all__ = ["AREA_FILE_TYPES", "AreaPerilIndex", "read_area_peril_file"]

#: ``file_type`` values the ``rtree`` step accepts.
AREA_FILE_TYPES = ("parquet", "csv")

#: Earth radius (m) the reference uses to turn haversine angles into metres.
EARTH_RADIUS_M = 6371000.0

_CORNER_COLUMN = re.compile(r"^(lon|lat)(\d+)$", re.IGNORECASE)


def read_area_peril_file(
    path: Path, file_type: str, read_params: dict[str, Any] | None = None, *, step: str | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read an area peril file into attributes and polygons.

    Parameters
    ----------
    path : Path
        The file.
    file_type : {"parquet", "csv"}
        Its format.
    read_params : dict, optional
        Extra keyword arguments for :func:`pandas.read_parquet` or
        :func:`pandas.read_csv` (the reference's ``area_peril_read_params``).
    step : str, optional
        Lookup step name, for error messages.

    Returns
    -------
    attributes : pandas.DataFrame
        The non-geometry columns, lower-cased, one row per polygon, index 0..n-1.
    geometries : numpy.ndarray
        shapely geometries, one per row of ``attributes``.

    Raises
    ------
    LookupConfigError
        If the file is missing, of an unsupported type, or has no geometry.
    """
    read_params = dict(read_params or {})
    if file_type not in AREA_FILE_TYPES:
        raise LookupConfigError(
            f"file_type '{file_type}' is not supported for area peril polygons",
            source=path,
            step=step,
            fix=f"use one of {list(AREA_FILE_TYPES)} (a GeoParquet file with a WKB geometry column, "
            "or a csv with a WKT 'geometry' column or LON1,LAT1,LON2,LAT2,... corner columns)",
        )
    if not path.is_file():
        raise LookupConfigError(
            "area peril file not found",
            source=path,
            step=step,
            fix="check 'file_path' in the step parameters and the keys data path (keys_data_path)",
        )
    if file_type == "parquet":
        frame = pd.read_parquet(path, **read_params).reset_index(drop=True)
        geometry_column = _geoparquet_geometry_column(path)
        if geometry_column not in frame.columns:
            raise LookupConfigError(
                f"no geometry column '{geometry_column}'",
                source=path,
                step=step,
                fix="write the file with geopandas (GeoDataFrame.to_parquet) or add a WKB 'geometry' column",
            )
        geometries = _decode_geometries(frame[geometry_column].to_numpy(), path, step)
        attributes = frame.drop(columns=[geometry_column])
    else:
        frame = pd.read_csv(path, **read_params)
        geometries, used = _csv_geometries(frame, path, step)
        attributes = frame.drop(columns=used)
    attributes.columns = [str(column).lower() for column in attributes.columns]
    present = ~shapely.is_missing(geometries)
    attributes = attributes.loc[present].reset_index(drop=True)
    return attributes, geometries[present]


def _geoparquet_geometry_column(path: Path) -> str:
    """Name of the primary geometry column of a GeoParquet file (``geometry`` if not recorded)."""
    metadata = pq.read_schema(path).metadata or {}
    geo = metadata.get(b"geo")
    if geo:
        try:
            return json.loads(geo).get("primary_column", "geometry")
        except (ValueError, AttributeError):
            pass
    return "geometry"


def _decode_geometries(values: np.ndarray, path: Path, step: str | None) -> np.ndarray:
    """Decode WKB (bytes) or WKT (text) geometries; missing values stay missing."""
    sample = next((value for value in values if value is not None and value == value), None)
    try:
        if isinstance(sample, bytes | bytearray | memoryview):
            return shapely.from_wkb(values)
        return shapely.from_wkt(values)
    except shapely.errors.GEOSException as error:
        raise LookupConfigError(
            f"geometries could not be decoded ({error})",
            source=path,
            step=step,
            fix="store polygons as WKB (GeoParquet) or WKT",
        ) from error


def _csv_geometries(frame: pd.DataFrame, path: Path, step: str | None) -> tuple[np.ndarray, list[str]]:
    """Polygons of a csv area file, and the columns they were built from."""
    by_lower = {str(column).lower(): column for column in frame.columns}
    if "geometry" in by_lower:
        column = by_lower["geometry"]
        return _decode_geometries(frame[column].to_numpy(dtype=object), path, step), [column]
    corners: dict[int, dict[str, str]] = {}
    for column in frame.columns:
        match = _CORNER_COLUMN.match(str(column))
        if match:
            corners.setdefault(int(match.group(2)), {})[match.group(1).lower()] = column
    numbers = sorted(number for number, pair in corners.items() if len(pair) == 2)
    if len(numbers) < 3:
        raise LookupConfigError(
            "no polygons: the csv has neither a 'geometry' (WKT) column nor at least three "
            "corner column pairs LON1,LAT1,LON2,LAT2,LON3,LAT3",
            source=path,
            step=step,
            fix="add the cell corners as LONn/LATn columns or a WKT 'geometry' column",
        )
    lon = frame[[corners[n]["lon"] for n in numbers]].to_numpy(dtype=float)
    lat = frame[[corners[n]["lat"] for n in numbers]].to_numpy(dtype=float)
    points = shapely.multipoints(np.stack([lon, lat], axis=-1))
    used = [corners[n][axis] for n in numbers for axis in ("lon", "lat")]
    return shapely.convex_hull(points), used


class AreaPerilIndex:
    """Polygons with attributes, queried by longitude/latitude.

    Parameters
    ----------
    attributes : pandas.DataFrame
        One row per polygon (index 0..n-1): the columns given to matching locations.
    geometries : numpy.ndarray
        The polygons (shapely geometries), aligned with ``attributes``.
    nearest_max_distance : float, default -1
        If positive, a location that intersects no polygon takes the polygon
        whose centroid is nearest, when that centroid is at most this many
        metres away (the reference's ``nearest_neighbor_min_distance``).

    Notes
    -----
    Nearest-centroid distances follow the reference exactly, quirk included:
    it gives scikit-learn's haversine metric ``(lon, lat)`` pairs where the
    metric expects ``(lat, lon)``, so the great-circle distance is computed
    as if longitude were latitude and the other way round. Here the same
    coordinates go onto the unit sphere and a KD-tree finds the nearest
    centroid by chord length, which orders points as the great-circle
    distance does; distances are ``2 asin(chord / 2)`` earth radii.
    """

    def __init__(self, attributes: pd.DataFrame, geometries: np.ndarray, nearest_max_distance: float = -1) -> None:
        self.attributes = attributes.reset_index(drop=True)
        self.geometries = np.asarray(geometries, dtype=object)
        self.tree = shapely.STRtree(self.geometries)
        self.nearest_max_distance = float(nearest_max_distance)
        self._centroid_tree = None
        if self.nearest_max_distance > 0 and len(self.geometries):
            centroids = shapely.centroid(self.geometries)
            from scipy.spatial import cKDTree  # imported here: scipy.spatial takes ~0.4 s to import

            self._centroid_tree = cKDTree(
                _swapped_unit_vectors(shapely.get_x(centroids), shapely.get_y(centroids))
            )

    def join(
        self, locations: pd.DataFrame, lon_column: str = "longitude", lat_column: str = "latitude",
        points: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Left-join ``locations`` with the polygons their points fall in.

        Parameters
        ----------
        locations : pandas.DataFrame
            Rows with longitude and latitude columns.
        lon_column, lat_column : str
            Names of those columns.
        points : numpy.ndarray, optional
            The locations' points (``shapely.points(lon, lat)``, one per row) when the caller
            already has them.

        Returns
        -------
        pandas.DataFrame
            One row per (location row, intersecting polygon), with the polygon's
            attribute columns (replacing location columns of the same name);
            a location matching no polygon keeps one row whose attributes are
            missing (or come from the nearest centroid, see the class notes).
            Rows with a missing coordinate never match. The index is 0..n-1.
        """
        if locations.columns.duplicated().any():
            locations = locations.reset_index(drop=True)
        shared = [column for column in self.attributes.columns if column in locations.columns]
        lon = pd.to_numeric(locations[lon_column], errors="coerce").to_numpy(dtype=float)
        lat = pd.to_numeric(locations[lat_column], errors="coerce").to_numpy(dtype=float)
        has_point = ~(np.isnan(lon) | np.isnan(lat))
        rows = np.flatnonzero(has_point)

        row_points = shapely.points(lon[rows], lat[rows]) if points is None else np.asarray(points)[rows]
        row_index, polygon_index = self.tree.query(row_points, predicate="intersects")
        matched_rows = rows[row_index]
        matched = np.zeros(len(locations), dtype=bool)
        matched[matched_rows] = True
        unmatched = np.flatnonzero(~matched)  # np.setdiff1d(arange, matched_rows), without its sort
        unmatched_polygon = np.full(len(unmatched), -1, dtype=np.int64)

        if self._centroid_tree is not None:
            near = unmatched[has_point[unmatched]]
            if len(near):
                chord, nearest = self._centroid_tree.query(_swapped_unit_vectors(lon[near], lat[near]), k=1)
                distance = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0)) * EARTH_RADIUS_M
                close = distance <= self.nearest_max_distance
                unmatched_polygon[np.searchsorted(unmatched, near[close])] = nearest[close]

        all_rows = np.concatenate([matched_rows, unmatched])
        all_polygons = np.concatenate([polygon_index.astype(np.int64), unmatched_polygon])
        in_order = len(all_rows) == len(locations) and bool((all_rows == np.arange(len(all_rows))).all())
        if locations.columns.duplicated().any():
            joined = locations.drop(columns=shared).iloc[all_rows].reset_index(drop=True)
        else:  # the location columns taken once (not at all when every row matched one polygon, in order)
            joined = pd.DataFrame({column: _rows_of(locations[column], None if in_order else all_rows)
                                   for column in locations.columns if column not in shared}, copy=False)
            if not len(joined.columns):
                joined = pd.DataFrame(index=pd.RangeIndex(len(all_rows)))
        found = all_polygons >= 0
        for column in self.attributes.columns:
            values = self.attributes[column]
            taken = values.iloc[np.where(found, all_polygons, 0)].reset_index(drop=True) if len(values) else None
            if taken is None:
                joined[column] = pd.Series(np.nan, index=joined.index)
            else:
                joined[column] = taken.where(found)
        return joined


def _rows_of(values: pd.Series, rows: np.ndarray | None) -> pd.Series:
    """``values.iloc[rows]`` (all rows when None) with the index 0..n-1; not copied when all rows are taken."""
    array = values.array if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) else values.to_numpy()
    if rows is not None:
        array = array.take(rows)
    return pd.Series(array, dtype=values.dtype, copy=False)


def _swapped_unit_vectors(lon_degrees: np.ndarray, lat_degrees: np.ndarray) -> np.ndarray:
    """Unit-sphere points for the reference's haversine call, which reads ``lon`` as latitude.

    The reference passes ``(lon, lat)`` radians to a metric taking
    ``(latitude, longitude)``; this places each point at latitude ``lon``
    and longitude ``lat`` so chord lengths match that metric.
    """
    pseudo_lat = np.radians(np.asarray(lon_degrees, dtype=float))
    pseudo_lon = np.radians(np.asarray(lat_degrees, dtype=float))
    cos_lat = np.cos(pseudo_lat)
    return np.column_stack([cos_lat * np.cos(pseudo_lon), cos_lat * np.sin(pseudo_lon), np.sin(pseudo_lat)])
