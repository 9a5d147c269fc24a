"""Tests for perilflow.kernel.lookup: the model-configured keys lookup and the keys files.

* Reference tests (marker ``reference``) run PiWind's ``lookup_config.json`` on the
  10- and 12,598-location portfolios and compare ``keys.csv`` / ``keys-errors.csv`` with
  the files oasislmf 2.5.8 wrote (``../shared/piwind/expected-inputs``), as sorted lines.
* Synthetic tests pin each step type on small data, the configuration errors, model
  lookup classes (``lookup_class`` / ``lookup_module`` / ``lookup_module_path``, with the
  small classes defined below) and the writers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from perilflow.kernel.lookup import (
    BasicKeyLookup,
    BuiltinLookup,
    LookupConfigError,
    LookupDataError,
    load_lookup_config,
    location_ids,
    read_keys,
    read_keys_errors,
    run_lookup,
    write_keys,
    write_keys_errors,
)
from perilflow.kernel.lookup.areaperil import AreaPerilIndex
from perilflow.kernel.lookup.steps import _Grid, grid_area_peril_ids, peril_groups_table
from tests.conftest import require_shared

# --------------------------------------------------------------------------- helpers

MODEL = {"supplier_id": "Test", "model_id": "Tiny", "model_version": "1"}


def locations(rows: list[dict]) -> pd.DataFrame:
    """An OED-like location frame with loc_id built as the reference does."""
    frame = pd.DataFrame(rows, index=range(len(rows)))
    frame["PortNumber"] = "1"
    frame["AccNumber"] = "A1"
    frame["LocNumber"] = [f"L{i:03d}" for i in range(len(frame))]
    frame["loc_id"] = location_ids(frame)
    return frame


def builtin_config(steps: dict, strategy: list[str], keys_data: Path | None = None) -> dict:
    """A new_lookup configuration."""
    config = {"model": MODEL, "builtin_lookup_type": "new_lookup", "step_definition": steps, "strategy": strategy}
    if keys_data is not None:
        config["keys_data_path"] = str(keys_data)
    return config


SPLIT = {"type": "split_loc_perils_covered", "columns": ["locperilscovered"],
         "parameters": {"model_perils_covered": ["WTC", "WSS"]}}
PIVOT = {"type": "simple_pivot", "parameters": {"pivots": [{"new_cols": {"coverage_type": 1}},
                                                           {"new_cols": {"coverage_type": 3}}]}}
GRID = {"type": "fixed_size_geo_grid", "columns": ["latitude", "longitude"],
        "parameters": {"lat_min": 0.0, "lat_max": 2.0, "lon_min": 0.0, "lon_max": 3.0, "arc_size": 1.0}}


def vulnerability_file(folder: Path) -> Path:
    """vulnerability_dict.csv for perils WTC/WSS, coverages 1/3, occupancy 1000 (1050 has a 0 id)."""
    path = folder / "vulnerability_dict.csv"
    path.write_text(
        "PERIL_ID,COVERAGE_TYPE,OCCUPANCYCODE,VULNERABILITY_ID\n"
        "WTC,1,1000,1\nWTC,3,1000,4\nWSS,1,1000,7\nWSS,3,1000,10\n"
        "WTC,1,1050,0\nWTC,3,1050,0\n"
    )
    return path


VULN = {"type": "merge", "columns": ["peril_id", "coverage_type", "occupancycode"],
        "parameters": {"file_path": "%%KEYS_DATA_PATH%%/vulnerability_dict.csv", "id_columns": ["vulnerability_id"]}}


def squares() -> tuple[pd.DataFrame, np.ndarray]:
    """Two perils x a 2x2 grid of unit squares on lon 0..2, lat 0..2; ids 1..4 (WTC), 11..14 (WSS)."""
    rows, polygons = [], []
    for peril, base in (("WTC", 0), ("WSS", 10)):
        for i, (x, y) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)], start=1):
            rows.append({"peril_id": peril, "area_peril_id": base + i})
            polygons.append(shapely.box(x, y, x + 1, y + 1))
    return pd.DataFrame(rows), np.array(polygons, dtype=object)


def write_geoparquet(path: Path, attributes: pd.DataFrame, polygons: np.ndarray, geo_metadata: bool = True) -> Path:
    """A GeoParquet file as geopandas writes it (WKB geometry + 'geo' metadata)."""
    table = pa.Table.from_pandas(attributes.assign(geometry=shapely.to_wkb(polygons)), preserve_index=False)
    if geo_metadata:
        geo = {"primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB", "crs": None}}}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path)
    return path


def rtree_step(file_name: str, file_type: str = "parquet", **extra) -> dict:
    return {"type": "rtree", "columns": ["latitude", "longitude"],
            "parameters": {"file_path": f"%%KEYS_DATA_PATH%%/{file_name}", "file_type": file_type,
                           "id_columns": ["area_peril_id"], **extra}}


def swapped_haversine_m(lon1, lat1, lon2, lat2) -> float:
    """The reference's distance: sklearn haversine on (lon, lat) pairs read as (lat, lon)."""
    a1, b1, a2, b2 = map(math.radians, (lon1, lat1, lon2, lat2))
    h = math.sin((a2 - a1) / 2) ** 2 + math.cos(a1) * math.cos(a2) * math.sin((b2 - b1) / 2) ** 2
    return 2 * math.asin(math.sqrt(h)) * 6371000.0


# --------------------------------------------------------------------------- reference: PiWind


def piwind_locations(file_name: str) -> pd.DataFrame:
    from ods_tools.oed import OedExposure

    path = require_shared(f"piwind/tests/inputs/{file_name}")
    location = OedExposure(location=str(path), check_oed=False).location.dataframe
    location["loc_id"] = location_ids(location)
    return location


def assert_same_lines(actual: Path, expected: Path) -> None:
    """Same header and the same data lines, in any order."""
    got = actual.read_text().splitlines()
    want = expected.read_text().splitlines()
    assert got[0] == want[0]
    assert len(got) == len(want)
    assert sorted(got[1:]) == sorted(want[1:])


@pytest.mark.reference
@pytest.mark.parametrize("case, file_name", [("loc10", "SourceLocOEDPiWind10.csv"),
                                             ("loc12598", "SourceLocOEDPiWind.csv")])
def test_piwind_keys_match_oasislmf(case, file_name, tmp_path):
    config = require_shared("piwind/keys_data/PiWind/lookup_config.json")
    expected = require_shared(f"piwind/expected-inputs/{case}")
    keys, errors = run_lookup(config, piwind_locations(file_name))
    write_keys(tmp_path / "keys.csv", keys)
    write_keys_errors(tmp_path / "keys-errors.csv", errors)
    assert_same_lines(tmp_path / "keys.csv", expected / "keys.csv")
    assert_same_lines(tmp_path / "keys-errors.csv", expected / "keys-errors.csv")
    assert errors.empty
    assert keys["loc_id"].is_monotonic_increasing


@pytest.mark.reference
def test_piwind_csv_corner_polygons_give_the_same_keys(tmp_path):
    """areaperil_dict.csv (corners, one row per coverage type) instead of the parquet file, no pivot."""
    keys_data = require_shared("piwind/keys_data/PiWind")
    config = json.loads((keys_data / "lookup_config.json").read_text())
    config["step_definition"]["peril"]["parameters"].update(
        file_path="%%KEYS_DATA_PATH%%/areaperil_dict.csv", file_type="csv")
    config["strategy"] = ["split_loc_perils_covered", "peril", "vulnerability"]
    keys, errors = run_lookup(config, piwind_locations("SourceLocOEDPiWind10.csv"), keys_data_path=keys_data)
    expected = pd.read_csv(require_shared("piwind/expected-inputs/loc10/keys.csv"))
    expected.columns = list(keys.columns)
    assert errors.empty
    pd.testing.assert_frame_equal(keys, expected.sort_values(list(keys.columns[:3])).reset_index(drop=True))


@pytest.mark.reference
def test_location_ids_match_the_reference_numbering():
    """PiWind's keys.csv starts with LocID 412: the file is not in LocNumber text order."""
    path = require_shared("piwind/tests/inputs/SourceLocOEDPiWind.csv")
    from_ods = piwind_locations("SourceLocOEDPiWind.csv")["loc_id"].to_numpy()
    from_pandas = location_ids(pd.read_csv(path))  # LocNumber read as int64 -> text again
    np.testing.assert_array_equal(from_ods, from_pandas)
    assert from_ods[:2].tolist() == [412, 413]
    assert sorted(from_ods) == list(range(1, 12599))
    expected_first = pd.read_csv(require_shared("piwind/expected-inputs/loc12598/keys.csv"))["LocID"].iloc[0]
    assert expected_first == 412


# --------------------------------------------------------------------------- location_ids


def test_location_ids_sort_as_text_and_share_duplicates():
    frame = pd.DataFrame({"PortNumber": ["1", "1", "1", "2", "1"], "AccNumber": ["A", "A", "A", "A", "B"],
                          "LocNumber": ["9", "10", "9", "1", "1"]})
    assert location_ids(frame).tolist() == [2, 1, 2, 4, 3]
    numeric = frame.assign(LocNumber=frame["LocNumber"].astype(int), PortNumber=[1.0, 1.0, 1.0, 2.0, 1.0])
    assert location_ids(numeric).tolist() == [2, 1, 2, 4, 3]
    with pytest.raises(ValueError, match="LocNumber"):
        location_ids(frame.drop(columns="LocNumber"))


def test_location_ids_follow_category_order_like_the_reference():
    """ods-tools frames of large files have categories in pandas' block order; the reference sorts by it."""
    frame = pd.DataFrame({"PortNumber": ["1"] * 3, "AccNumber": ["A"] * 3, "LocNumber": ["a", "b", "c"]})
    frame["LocNumber"] = pd.Categorical(frame["LocNumber"], categories=["b", "c", "a", ""])
    assert location_ids(frame).tolist() == [3, 1, 2]
    assert frame[["PortNumber", "AccNumber", "LocNumber"]].sort_values(
        ["PortNumber", "AccNumber", "LocNumber"]).index.tolist() == [1, 2, 0]  # what get_ids sorts on


# --------------------------------------------------------------------------- split_loc_perils_covered


def test_peril_groups_table_comes_from_ods_tools():
    table = peril_groups_table()
    assert set(table.loc[table["peril_group_id"] == "WW1", "peril_id"]) == {"WTC", "WEC", "WSS"}
    assert table.loc[table["peril_group_id"] == "WTC", "peril_id"].tolist() == ["WTC"]


def test_split_loc_perils_covered_expands_groups_and_marks_not_at_risk(tmp_path):
    vulnerability_file(tmp_path)
    location = locations([
        {"LocPerilsCovered": "WW1", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},
        {"LocPerilsCovered": "WSS", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},
        {"LocPerilsCovered": "QQ1", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},
        {"LocPerilsCovered": "WW2;WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},
    ])
    config = builtin_config({"split": SPLIT, "grid": GRID, "pivot": PIVOT, "vuln": VULN},
                            ["split", "grid", "pivot", "vuln"], tmp_path)
    keys, errors = run_lookup(config, location)
    per_loc = keys.groupby("loc_id")["peril_id"].apply(list).to_dict()
    assert per_loc[1] == ["WSS", "WSS", "WTC", "WTC"]  # WW1 -> WTC, WEC, WSS; WEC not modelled
    assert per_loc[2] == ["WSS", "WSS"]
    # As in the reference, WTC reached through WW2 and through WTC gives two rows per coverage.
    assert per_loc[4] == ["WTC"] * 4
    assert errors[["loc_id", "coverage_type", "status", "message"]].values.tolist() == [
        [3, 1, "notatrisk", "QQ1 have no perils modelled"],
        [3, 3, "notatrisk", "QQ1 have no perils modelled"],
    ]
    assert errors["peril_id"].isna().all()


# --------------------------------------------------------------------------- rtree


@pytest.fixture
def area_folder(tmp_path) -> Path:
    attributes, polygons = squares()
    write_geoparquet(tmp_path / "areas.parquet", attributes, polygons)
    wkt = attributes.assign(geometry=shapely.to_wkt(polygons)).rename(columns=str.upper)
    wkt.to_csv(tmp_path / "areas_wkt.csv", index=False)
    vulnerability_file(tmp_path)
    return tmp_path


@pytest.mark.parametrize("file_name, file_type", [("areas.parquet", "parquet"), ("areas_wkt.csv", "csv")])
def test_rtree_matches_polygons_per_peril(area_folder, file_name, file_type):
    location = locations([
        {"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},  # cell 1
        {"LocPerilsCovered": "WSS", "Latitude": 1.5, "Longitude": 0.5, "OccupancyCode": 1000},  # cell 12
        {"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 1.0, "OccupancyCode": 1000},  # edge: 1 and 3
        {"LocPerilsCovered": "WTC", "Latitude": 5.0, "Longitude": 5.0, "OccupancyCode": 1000},  # outside
        {"LocPerilsCovered": "WTC", "Latitude": None, "Longitude": 0.5, "OccupancyCode": 1000},  # no point
        {"LocPerilsCovered": "WTC", "Latitude": 2.0, "Longitude": 2.0, "OccupancyCode": 1000},  # corner of 4
    ])
    config = builtin_config({"split": SPLIT, "peril": rtree_step(file_name, file_type), "pivot": PIVOT,
                             "vuln": VULN}, ["split", "peril", "pivot", "vuln"], area_folder)
    keys, errors = run_lookup(config, location)
    cov1 = keys[keys["coverage_type"] == 1]
    assert cov1[["loc_id", "peril_id", "area_peril_id", "vulnerability_id"]].values.tolist() == [
        [1, "WTC", 1, 1], [2, "WSS", 12, 7], [3, "WTC", 1, 1], [3, "WTC", 3, 1], [6, "WTC", 4, 1]]
    assert errors[["loc_id", "status", "message"]].drop_duplicates().values.tolist() == [
        [4, "fail", "area_peril_id has an unknown id"], [5, "fail", "area_peril_id has an unknown id"]]
    assert len(errors) == 4


def test_rtree_nearest_neighbour_uses_the_reference_distance(tmp_path):
    """Outside points take the nearest centroid within the distance, measured as the reference does."""
    attributes, polygons = squares()
    polygons = shapely.transform(polygons, lambda xy: xy + [0.0, 50.0])  # lon 0..2, lat 50..52
    write_geoparquet(tmp_path / "areas.parquet", attributes, polygons)
    vulnerability_file(tmp_path)
    lon, lat = 2.3, 51.6  # nearest WTC centroid: cell 4 at (1.5, 51.5)
    distance = swapped_haversine_m(lon, lat, 1.5, 51.5)
    true_distance = swapped_haversine_m(lat, lon, 51.5, 1.5)  # proper (lat, lon) order
    assert distance > 80_000 and true_distance < 60_000  # the quirk matters at this latitude
    points = pd.DataFrame({"longitude": [lon, lon], "latitude": [lat, lat]})
    wtc = (attributes["peril_id"] == "WTC").to_numpy()
    cells = attributes[wtc].drop(columns="peril_id")
    assert AreaPerilIndex(cells, polygons[wtc], distance * 1.0001).join(points)["area_peril_id"].tolist() == [4, 4]
    assert AreaPerilIndex(cells, polygons[wtc], distance * 0.9999).join(points)["area_peril_id"].isna().all()

    location = locations([{"LocPerilsCovered": "WTC", "Latitude": lat, "Longitude": lon, "OccupancyCode": 1000}])
    step = rtree_step("areas.parquet", nearest_neighbor_min_distance=distance * 1.0001)
    config = builtin_config({"split": SPLIT, "peril": step, "pivot": PIVOT, "vuln": VULN},
                            ["split", "peril", "pivot", "vuln"], tmp_path)
    keys, errors = run_lookup(config, location)
    assert keys["area_peril_id"].tolist() == [4, 4] and errors.empty


def test_rtree_without_peril_column_and_without_geo_metadata(tmp_path):
    attributes, polygons = squares()
    write_geoparquet(tmp_path / "plain.parquet", attributes.drop(columns="peril_id")[:4], polygons[:4],
                     geo_metadata=False)
    frame = pd.DataFrame({"latitude": [1.5, 9.0], "longitude": [1.5, 9.0], "peril_id": ["XYZ", "XYZ"]})
    config = builtin_config({"peril": rtree_step("plain.parquet")}, ["peril"], tmp_path)
    lookup = BuiltinLookup(load_lookup_config(config).data)
    joined = lookup.steps[0].function(frame)
    assert joined["area_peril_id"].tolist() == [4, -1]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.5, 2.5), st.floats(-0.5, 2.5)), min_size=1, max_size=40))
def test_rtree_join_equals_point_by_point_intersects(points):
    """One row per (point, intersecting square), borders included; -1 for points in none."""
    attributes, polygons = squares()
    index = AreaPerilIndex(attributes.iloc[:4].drop(columns="peril_id"), polygons[:4])
    frame = pd.DataFrame(points, columns=["longitude", "latitude"]).assign(row=range(len(points)))
    joined = index.join(frame)
    expected = []
    for row, (x, y) in enumerate(points):
        hits = [k for k in range(4) if shapely.intersects(polygons[k], shapely.Point(x, y))]
        expected += [(row, int(attributes["area_peril_id"].iloc[k])) for k in hits] or [(row, -1)]
    got = list(zip(joined["row"], joined["area_peril_id"].fillna(-1).astype(int), strict=True))
    assert sorted(got) == sorted(expected)


# --------------------------------------------------------------------------- fixed size geo grid


def test_fixed_size_geo_grid_ids():
    grid = _Grid(lat_min=0.0, lat_max=2.0, lon_min=0.0, lon_max=3.0, arc_size=1.0)
    lat = np.array([0.5, 1.5, 0.5, 1.0, 0.0, 1.5, np.nan, 2.0])
    lon = np.array([0.5, 0.5, 1.5, 2.5, 0.5, 3.0, 0.5, 1.0])
    assert grid_area_peril_ids(grid, lat, lon).tolist() == [1, 2, 3, 6, -1, -1, -1, -1]
    lon_first = _Grid(0.0, 2.0, 0.0, 3.0, 1.0, lon_first=True)
    assert grid_area_peril_ids(lon_first, lat[:4], lon[:4]).tolist() == [1, 4, 2, 6]
    reverse = _Grid(0.0, 2.0, 0.0, 3.0, 1.0, lat_reverse=True, lon_reverse=True)
    assert grid_area_peril_ids(reverse, lat[:4], lon[:4]).tolist() == [6, 5, 4, 2]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 4, allow_nan=False), st.floats(-1, 4, allow_nan=False)), max_size=30),
       st.booleans(), st.booleans(), st.booleans())
def test_fixed_size_geo_grid_equals_the_reference_formula(points, lat_reverse, lon_reverse, lon_first):
    grid = _Grid(0.1, 2.9, -0.3, 3.3, 0.7, lat_reverse, lon_reverse, lon_first)
    n_lat, n_lon = round(2.8 / 0.7), round(3.6 / 0.7)

    def reference(lat, lon):
        if not (grid.lat_min < lat < grid.lat_max and grid.lon_min < lon < grid.lon_max):
            return -1
        i = math.floor(((grid.lat_max - lat) if lat_reverse else (lat - grid.lat_min)) / 0.7)
        j = math.floor(((grid.lon_max - lon) if lon_reverse else (lon - grid.lon_min)) / 0.7)
        return j + i * n_lon + 1 if lon_first else j * n_lat + i + 1

    lat = np.array([p[0] for p in points], dtype=float)
    lon = np.array([p[1] for p in points], dtype=float)
    assert grid_area_peril_ids(grid, lat, lon).tolist() == [reference(a, b) for a, b in points]


def test_fixed_size_geo_grid_multi_peril_offsets_by_the_first_grid(tmp_path):
    small = {"lat_min": 0.0, "lat_max": 2.0, "lon_min": 0.0, "lon_max": 3.0, "arc_size": 1.0}
    big = {"lat_min": 0.0, "lat_max": 2.0, "lon_min": 0.0, "lon_max": 3.0, "arc_size": 0.5}
    step = {"type": "fixed_size_geo_grid_multi_peril", "columns": ["latitude", "longitude"],
            "parameters": {"perils_dict": {"WTC": small, "WSS": big}}}
    frame = pd.DataFrame({"latitude": [0.5, 0.5, 0.5], "longitude": [0.5, 0.5, 0.5], "peril_id": ["WTC", "WSS", "X"]})
    lookup = BuiltinLookup(load_lookup_config(builtin_config({"grid": step}, ["grid"], tmp_path)).data)
    # WSS: cell (lon 1, lat 1) of a 4-lat grid -> 1 * 4 + 1 + 1 = 6, plus the 6 cells of the first grid.
    assert lookup.steps[0].function(frame)["area_peril_id"].tolist() == [1, 12, -1]


# --------------------------------------------------------------------------- merge, pivot, combine, interval


def test_merge_left_join_sets_unknown_ids_and_fails_them(tmp_path):
    vulnerability_file(tmp_path)
    location = locations([
        {"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000},
        {"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1050},  # id 0
        {"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 9999},  # no row
    ])
    location["OccupancyCode"] = location["OccupancyCode"].astype("Int64")
    location["LocPerilsCovered"] = location["LocPerilsCovered"].astype("category")
    config = builtin_config({"split": SPLIT, "grid": GRID, "pivot": PIVOT, "vuln": VULN},
                            ["split", "grid", "pivot", "vuln"], tmp_path)
    keys, errors = run_lookup(config, location)
    assert keys[["loc_id", "coverage_type", "vulnerability_id"]].values.tolist() == [[1, 1, 1], [1, 3, 4]]
    assert errors[["loc_id", "peril_id", "coverage_type", "status", "message"]].values.tolist() == [
        [2, "WTC", 1, "fail", "vulnerability_id has an unknown id"],
        [2, "WTC", 3, "fail", "vulnerability_id has an unknown id"],
        [3, "WTC", 1, "fail", "vulnerability_id has an unknown id"],
        [3, "WTC", 3, "fail", "vulnerability_id has an unknown id"],
    ]


def test_merge_reads_parquet_and_reports_type_clashes(tmp_path):
    pd.DataFrame({"PERIL_ID": ["WTC"], "COVERAGE_TYPE": [1], "OCCUPANCYCODE": ["1000"],
                  "VULNERABILITY_ID": [5]}).to_parquet(tmp_path / "vuln.parquet")
    step = {**VULN, "parameters": {"file_path": "%%KEYS_DATA_PATH%%/vuln.parquet", "id_columns": ["vulnerability_id"]}}
    frame = pd.DataFrame({"peril_id": ["WTC"], "coverage_type": [1], "occupancycode": ["1000"]})
    lookup = BuiltinLookup(load_lookup_config(builtin_config({"vuln": step}, ["vuln"], tmp_path)).data)
    assert lookup.steps[0].function(frame)["vulnerability_id"].tolist() == [5]
    with pytest.raises(LookupDataError, match=r"vuln\.parquet.*occupancycode"):
        lookup.steps[0].function(frame.assign(occupancycode=[1000]))


def test_simple_pivot_on_and_new_cols(tmp_path):
    step = {"type": "simple_pivot", "parameters": {"pivots": [
        {"on": {"vuln_str": "vulnerability_id"}, "new_cols": {"coverage_type": 1}},
        {"on": {"vuln_con": "vulnerability_id"}, "new_cols": {"coverage_type": 3}}]}}
    frame = pd.DataFrame({"loc_id": [1, 2], "vuln_str": [3, 18], "vuln_con": [2, 4]})
    lookup = BuiltinLookup(load_lookup_config(builtin_config({"pivot": step}, ["pivot"], tmp_path)).data)
    out = lookup.steps[0].function(frame)
    assert list(out.columns) == ["loc_id", "vulnerability_id", "coverage_type"]
    assert out.values.tolist() == [[1, 3, 1], [2, 18, 1], [1, 2, 3], [2, 4, 3]]


def test_combine_or_and_and(tmp_path):
    (tmp_path / "by_postcode.csv").write_text("POSTALCODE,AREA_PERIL_ID\nAB1,101\n")
    (tmp_path / "by_country.csv").write_text("COUNTRYCODE,AREA_PERIL_ID\nGB,900\n")
    (tmp_path / "car.csv").write_text("AUTOCODE,VULN_ID_CAR\n7,70\n")
    (tmp_path / "car_cov.csv").write_text("VULN_ID_CAR,VULNERABILITY_ID\n70,700\n")
    steps = {
        "postcode": {"type": "merge", "columns": ["postalcode"],
                     "parameters": {"file_path": "by_postcode.csv", "id_columns": ["area_peril_id"]}},
        "country": {"type": "merge", "columns": ["countrycode"],
                    "parameters": {"file_path": "by_country.csv", "id_columns": ["area_peril_id"]}},
        "nowhere": {"type": "merge", "columns": ["not_in_the_file"],
                    "parameters": {"file_path": "by_country.csv", "id_columns": ["area_peril_id"]}},
        "area": {"type": "combine", "parameters": {"id_columns": ["area_peril_id"],
                                                    "strategy": ["nowhere", "postcode", "country"]}},
        "car": {"type": "merge", "columns": ["autocode"],
                "parameters": {"file_path": "car.csv", "id_columns": ["vuln_id_car"]}},
        "car_cov": {"type": "merge", "parameters": {"file_path": "car_cov.csv", "id_columns": ["vulnerability_id"]}},
        "vuln": {"type": "combine", "parameters": {"id_columns": [["vuln_id_car"], ["vulnerability_id"]],
                                                    "strategy": ["car", "car_cov"], "logical_type": "and"}},
    }
    config = builtin_config(steps, ["area", "vuln"], tmp_path)
    config["keys_data_path"] = "."
    frame = pd.DataFrame({"loc_id": [1, 2, 3], "postalcode": ["AB1", "ZZ9", "ZZ9"],
                          "countrycode": ["GB", "GB", "FR"], "autocode": [7, 8, 7]})
    path = tmp_path / "lookup_config.json"
    path.write_text(json.dumps(config))
    lookup = BuiltinLookup(load_lookup_config(path).data, config_dir=tmp_path)
    out = lookup.steps[1].function(lookup.steps[0].function(frame)).sort_values("loc_id")
    assert out["area_peril_id"].tolist() == [101, 900, -1]
    assert out["vulnerability_id"].tolist() == [700, -1, 700]


def test_interval_to_index(tmp_path):
    (tmp_path / "bounds.txt").write_text("10\n20\n\n30\n")
    step = {"type": "interval_to_index", "columns": ["floors"],
            "parameters": {"value_column_name": "floors", "sorted_array": "%%KEYS_DATA_PATH%%/bounds.txt"}}
    lookup = BuiltinLookup(load_lookup_config(builtin_config({"i": step}, ["i"], tmp_path)).data)
    out = lookup.steps[0].function(pd.DataFrame({"floors": [5, 10, 25, None, 31]}))
    assert out["floors_idx"].tolist()[:3] == [0, 0, 2]
    assert math.isnan(out["floors_idx"].iloc[3]) and out["floors_idx"].iloc[4] == 3


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("mutate, match", [
    (lambda c: c.pop("step_definition"), "no 'step_definition'"),
    (lambda c: c.update(strategy=["split", "nope"]), r"names step\(s\) \['nope'\]"),
    (lambda c: c.update(strategy=[]), "'strategy' must be a non-empty list"),
    (lambda c: c["step_definition"]["grid"].update(type="h3"), "unknown step type 'h3'"),
    (lambda c: c["step_definition"]["grid"].pop("type"), "step 'grid': no 'type'"),
    (lambda c: c["step_definition"]["pivot"]["parameters"].update(pivot=[]), "wrong parameters.*pivot"),
    (lambda c: c["step_definition"]["grid"]["parameters"].update(arc_size=0), "grid is empty"),
    (lambda c: c["step_definition"]["grid"]["parameters"].update(lat_mn=1), r"unknown parameter\(s\) \['lat_mn'\]"),
    (lambda c: c["step_definition"]["vuln"]["parameters"].update(file_path="%%KEYS_DATA_PATH%%/missing.csv"),
     r"missing\.csv, step 'vuln': keys data file not found.*Fix: check 'file_path'"),
    (lambda c: c["step_definition"]["vuln"]["parameters"].update(file_path="%%MODEL_DIR%%/v.csv"),
     "placeholder %%MODEL_DIR%%"),
    (lambda c: c.pop("builtin_lookup_type"), "no lookup selected.*new_lookup"),
    (lambda c: c["step_definition"]["split"].update(columns="locperilscovered"), "'columns' must be a list"),
    (lambda c: c.update(keys_data_path="/no/such/folder"), "keys data folder /no/such/folder not found"),
])
def test_bad_configurations_raise_config_errors(tmp_path, mutate, match):
    vulnerability_file(tmp_path)
    config = builtin_config({"split": SPLIT, "grid": GRID, "pivot": PIVOT, "vuln": VULN},
                            ["split", "grid", "pivot", "vuln"], tmp_path)
    config = json.loads(json.dumps(config))
    mutate(config)
    location = locations([{"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000}])
    with pytest.raises(LookupConfigError, match=match) as error:
        run_lookup(config, location)
    assert isinstance(error.value, ValueError)


def test_bad_files_and_cycles(tmp_path):
    location = locations([{"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5}])
    with pytest.raises(LookupConfigError, match="lookup configuration file not found"):
        run_lookup(tmp_path / "nope.json", location)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LookupConfigError, match=r"broken\.json: not valid JSON"):
        run_lookup(tmp_path / "broken.json", location)
    cyclic = builtin_config({"a": {"type": "combine", "parameters": {"id_columns": ["x"], "strategy": ["b"]}},
                             "b": {"type": "combine", "parameters": {"id_columns": ["x"], "strategy": ["a"]}}},
                            ["a"], tmp_path)
    with pytest.raises(LookupConfigError, match="cyclic combine strategy: a -> b -> a"):
        run_lookup(cyclic, location)
    (tmp_path / "notgeo.csv").write_text("PERIL_ID,AREA_PERIL_ID\nWTC,1\n")
    no_polygons = builtin_config({"p": rtree_step("notgeo.csv", "csv")}, ["p"], tmp_path)
    with pytest.raises(LookupConfigError, match=r"notgeo\.csv, step 'p': no polygons"):
        run_lookup(no_polygons, location)
    shapefile = builtin_config({"p": rtree_step("areas.shp", "file")}, ["p"], tmp_path)
    with pytest.raises(LookupConfigError, match="file_type 'file' is not supported"):
        run_lookup(shapefile, location)


def test_missing_location_columns_raise_data_errors(tmp_path):
    vulnerability_file(tmp_path)
    config = builtin_config({"split": SPLIT, "grid": GRID, "pivot": PIVOT, "vuln": VULN},
                            ["split", "grid", "pivot", "vuln"], tmp_path)
    location = locations([{"LocPerilsCovered": "WTC", "Latitude": 0.5, "Longitude": 0.5}])
    with pytest.raises(LookupDataError, match=r"step 'vuln': the locations have no column\(s\) \['occupancycode'\]"):
        run_lookup(config, location)
    with pytest.raises(LookupDataError, match="no 'loc_id' column.*location_ids"):
        run_lookup(config, location.drop(columns="loc_id"))
    incomplete = builtin_config({"split": SPLIT, "grid": GRID}, ["split", "grid"], tmp_path)
    with pytest.raises(LookupConfigError, match=r"no \['coverage_type', 'vulnerability_id'\] column"):
        run_lookup(incomplete, location)


def test_keys_data_path_is_relative_to_the_config_file_and_overridable(tmp_path):
    model_dir = tmp_path / "model" / "keys"
    model_dir.mkdir(parents=True)
    vulnerability_file(model_dir)
    config = builtin_config({"split": SPLIT, "grid": GRID, "pivot": PIVOT, "vuln": VULN},
                            ["split", "grid", "pivot", "vuln"])
    config["keys_data_path"] = "./keys"
    (tmp_path / "model" / "lookup_config.json").write_text(json.dumps(config))
    location = locations([{"LocPerilsCovered": "WSS", "Latitude": 0.5, "Longitude": 0.5, "OccupancyCode": 1000}])
    keys, _ = run_lookup(tmp_path / "model" / "lookup_config.json", location)
    assert keys["vulnerability_id"].tolist() == [7, 10]
    other = tmp_path / "other"
    other.mkdir()
    (other / "vulnerability_dict.csv").write_text("PERIL_ID,COVERAGE_TYPE,OCCUPANCYCODE,VULNERABILITY_ID\n"
                                                  "WSS,1,1000,70\nWSS,3,1000,71\n")
    keys, _ = run_lookup(tmp_path / "model" / "lookup_config.json", location, keys_data_path=other)
    assert keys["vulnerability_id"].tolist() == [70, 71]


# --------------------------------------------------------------------------- model lookup classes


class TinyKeysLookup(BasicKeyLookup):
    """A model lookup: WTC, buildings only; area peril = loc_id; vulnerability from the config."""

    def process_locations(self, locations: pd.DataFrame) -> pd.DataFrame:
        n = len(locations)
        return pd.DataFrame({
            "loc_id": locations["loc_id"].to_numpy(),
            "peril_id": ["WTC"] * n,
            "coverage_type": [1] * n,
            "area_peril_id": locations["loc_id"].to_numpy(),
            "vulnerability_id": [self.config["tiny_vulnerability"]] * n,
            "status": np.where(locations["loc_id"] % 3 == 0, "nomatch", "success"),
            "message": np.where(locations["loc_id"] % 3 == 0, "no match for this one", ""),
            "amplification_id": [2] * n,
        })


class LegacyKeysLookup:
    """An old-style (interface 0) lookup, yielding dicts; loc 2 comes back with a missing area peril."""

    def __init__(self, keys_data_directory=None, supplier=None, model_name=None, model_version=None):
        self.model_name = model_name

    def process_locations(self, locations):
        for loc_id in locations["loc_id"]:
            yield {"loc_id": loc_id, "peril_id": "WSS", "coverage_type": 3,
                   "area_peril_id": None if loc_id == 2 else 5, "vulnerability_id": 6, "status": "success",
                   "message": self_name_check(self.model_name)}


def self_name_check(name: str) -> str:
    assert name == "Tiny"
    return ""


class NoStatusKeysLookup(BasicKeyLookup):
    def process_locations(self, locations):
        return [{"loc_id": 1, "peril_id": "WTC", "coverage_type": 1}]


@pytest.mark.parametrize("selector", [
    {"lookup_class": "tests.kernel.test_lookup.TinyKeysLookup"},
    {"lookup_module": "tests.kernel.test_lookup"},
    {"lookup_module_path": "tiny_lookup.py"},
])
def test_model_lookup_class(tmp_path, selector):
    (tmp_path / "tiny_lookup.py").write_text("from tests.kernel.test_lookup import TinyKeysLookup  # noqa: F401\n")
    config = {"model": MODEL, "keys_data_path": ".", "tiny_vulnerability": 9, **selector}
    (tmp_path / "lookup_config.json").write_text(json.dumps(config))
    location = locations([{"LocPerilsCovered": "WTC"}] * 4)
    keys, errors = run_lookup(tmp_path / "lookup_config.json", location)
    assert list(keys.columns) == ["loc_id", "peril_id", "coverage_type", "area_peril_id", "vulnerability_id",
                                  "amplification_id"]
    assert keys.values.tolist() == [[1, "WTC", 1, 1, 9, 2], [2, "WTC", 1, 2, 9, 2], [4, "WTC", 1, 4, 9, 2]]
    assert errors.values.tolist() == [[3, "WTC", 1, "nomatch", "no match for this one"]]
    write_keys(tmp_path / "keys.csv", keys)
    assert (tmp_path / "keys.csv").read_text().splitlines()[:2] == [
        "LocID,PerilID,CoverageTypeID,AreaPerilID,VulnerabilityID,AmplificationID", "1,WTC,1,1,9,2"]
    pd.testing.assert_frame_equal(read_keys(tmp_path / "keys.csv"), keys)


def test_legacy_lookup_class_and_unknown_ids(tmp_path):
    config = {"model": MODEL, "keys_data_path": str(tmp_path),
              "lookup_class": "tests.kernel.test_lookup.LegacyKeysLookup"}
    keys, errors = run_lookup(config, locations([{}, {}]))
    assert keys.values.tolist() == [[1, "WSS", 3, 5, 6]]
    assert errors.values.tolist() == [[2, "WSS", 3, "fail", "area_peril_id has an unknown id"]]


@pytest.mark.parametrize("selector, match", [
    ({"lookup_class": "tests.kernel.test_lookup.NoStatusKeysLookup"}, r"without column\(s\) \['status'\]"),
    ({"lookup_class": "tests.kernel.test_lookup.Missing"}, "has no class 'Missing'"),
    ({"lookup_class": "no_such_package.Lookup"}, "cannot import module 'no_such_package'"),
    ({"lookup_module": "tests.conftest"}, "has no class 'TinyKeysLookup'"),
    ({"lookup_module_path": "absent.py"}, "absent.py not found"),
])
def test_model_lookup_class_errors(tmp_path, selector, match):
    config = {"model": MODEL, "keys_data_path": str(tmp_path), **selector}
    with pytest.raises(LookupConfigError, match=match):
        run_lookup(config, locations([{}]))


# --------------------------------------------------------------------------- keys files


def test_keys_files_are_written_atomically(tmp_path, monkeypatch):
    errors = pd.DataFrame({"loc_id": [3, 4], "peril_id": [None, "WTC"], "coverage_type": pd.array([1, 3], "Int64"),
                           "status": ["notatrisk", "fail"], "message": ["QQ1 have no perils modelled", "a, b"]})
    path = write_keys_errors(tmp_path / "keys-errors.csv", errors)
    assert path.read_text() == ("LocID,PerilID,CoverageTypeID,Status,Message\n"
                                "3,,1,notatrisk,QQ1 have no perils modelled\n4,WTC,3,fail,\"a, b\"\n")
    back = read_keys_errors(path)
    assert back["message"].tolist() == ["QQ1 have no perils modelled", "a, b"] and back["peril_id"].isna()[0]

    keys = pd.DataFrame({"loc_id": [1], "peril_id": ["WTC"], "coverage_type": [1], "area_peril_id": [2.0],
                         "vulnerability_id": [3]})
    write_keys(tmp_path / "keys.csv", keys)
    assert (tmp_path / "keys.csv").read_text() == (
        "LocID,PerilID,CoverageTypeID,AreaPerilID,VulnerabilityID\n1,WTC,1,2,3\n")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        write_keys(tmp_path / "keys.csv", keys.assign(area_peril_id=[99]))
    assert (tmp_path / "keys.csv").read_text().endswith("1,WTC,1,2,3\n")
    assert sorted(os.listdir(tmp_path)) == ["keys-errors.csv", "keys.csv"]
    with pytest.raises(LookupDataError, match="vulnerability_id"):
        write_keys(tmp_path / "keys.csv", keys.drop(columns="vulnerability_id"))
