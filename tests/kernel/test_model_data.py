"""Model data readers: every format of every file gives the same arrays, and bad files fail clearly."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from perilflow.kernel.model import (
    ModelData,
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
from perilflow.kernel.model.dtypes import (
    DAMAGE_BIN_DICT_DTYPE,
    FOOTPRINT_CSV_DTYPE,
    FOOTPRINT_EVENT_DTYPE,
    OCCURRENCE_DTYPE,
    PERIODS_DTYPE,
    VULNERABILITY_DTYPE,
    VULNERABILITY_INDEX_DTYPE,
    VULNERABILITY_ROW_DTYPE,
)
from perilflow.kernel.oasis.errors import OasisFileError
from tests.conftest import require_shared

# --------------------------------------------------------------------------- small synthetic files

FOOTPRINT_ROWS = np.array(
    [(1, 10, 1, 0.25), (1, 10, 3, 0.75), (1, 12, 2, 1.0), (3, 10, 2, 1.0), (4, 11, 1, 0.5), (4, 11, 4, 0.5)],
    dtype=FOOTPRINT_CSV_DTYPE,
)
VULN_ROWS = np.array(
    [(v, i, d, p) for v in (2, 5) for i in (1, 2, 3, 4) for d, p in ((1, 0.5), (2, 0.3), (3, 0.2))],
    dtype=VULNERABILITY_DTYPE,
)


def write_csv(path: Path, array: np.ndarray, header: list[str] | None = None) -> Path:
    names = header or list(array.dtype.names)
    lines = [",".join(names)] + [",".join(str(v) for v in row) for row in array.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_footprint_bin(folder: Path, rows: np.ndarray, n_bins: int = 4, compressed: bool = False) -> None:
    body = np.empty(len(rows), FOOTPRINT_EVENT_DTYPE)
    for name in body.dtype.names:
        body[name] = rows[name]
    events, starts, counts = np.unique(rows["event_id"], return_index=True, return_counts=True)
    blocks = [body[s:s + c].tobytes() for s, c in zip(starts, counts, strict=True)]
    if compressed:
        blocks = [zlib.compress(b) for b in blocks]
    sizes = np.array([len(b) for b in blocks])
    offsets = 8 + np.concatenate(([0], np.cumsum(sizes)[:-1]))
    name = "footprint.bin.z" if compressed else "footprint.bin"
    with open(folder / name, "wb") as out:
        out.write(np.array([n_bins, 1 | (2 if compressed else 0)], "<i4").tobytes())
        out.writelines(blocks)
    if compressed:
        index = np.array(list(zip(events, offsets, sizes, counts * 12, strict=True)),
                         dtype=[("e", "<i4"), ("o", "<i8"), ("s", "<i8"), ("d", "<i8")])
        index.tofile(folder / "footprint.idx.z")
    else:
        np.array(list(zip(events, offsets, sizes, strict=True)),
                 dtype=[("e", "<i4"), ("o", "<i8"), ("s", "<i8")]).tofile(folder / "footprint.idx")


def block_as_rows(footprint, event_ids) -> list:
    block = footprint.event_block(event_ids)
    return [(int(event_ids[e]), int(a), int(i), float(p))
            for e in range(len(event_ids))
            for a, i, p in zip(block.areaperil_id[block.event_ptr[e]:block.event_ptr[e + 1]],
                               block.intensity_bin_id[block.event_ptr[e]:block.event_ptr[e + 1]],
                               block.probability[block.event_ptr[e]:block.event_ptr[e + 1]], strict=True)]


# --------------------------------------------------------------------------- footprint


@pytest.mark.parametrize("fmt", ["csv", "bin", "binZ", "parquet", "memory"])
def test_footprint_formats_agree(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        write_csv(tmp_path / "footprint.csv", FOOTPRINT_ROWS)
    elif fmt in ("bin", "binZ"):
        write_footprint_bin(tmp_path, FOOTPRINT_ROWS, compressed=fmt == "binZ")
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        for event in np.unique(FOOTPRINT_ROWS["event_id"]):
            part = tmp_path / "footprint.parquet" / f"event_id={event}"
            part.mkdir(parents=True)
            rows = FOOTPRINT_ROWS[FOOTPRINT_ROWS["event_id"] == event]
            pq.write_table(pa.table({n: rows[n] for n in ("areaperil_id", "intensity_bin_id", "probability")}),
                           part / "part-0.parquet")
        (tmp_path / "footprint_parquet_meta.json").write_text(json.dumps(
            {"num_intensity_bins": 4, "has_intensity_uncertainty": True}))
    footprint = footprint_from_records(FOOTPRINT_ROWS, 4) if fmt == "memory" else open_footprint(tmp_path)
    assert footprint.format == fmt
    assert footprint.num_intensity_bins == 4 and footprint.has_intensity_uncertainty
    assert footprint.event_ids.tolist() == [1, 3, 4]
    wanted = np.array([4, 2, 1, 3, 1])  # any order, an unknown event, repeats
    expected = [(int(e), int(r["areaperil_id"]), int(r["intensity_bin_id"]), float(r["probability"]))
                for e in wanted for r in FOOTPRINT_ROWS[FOOTPRINT_ROWS["event_id"] == e]]
    assert block_as_rows(footprint, wanted) == expected
    assert footprint.event_block(np.array([2, 7])).event_ptr.tolist() == [0, 0, 0]


@pytest.mark.parametrize("rows, message", [
    ([(1, 12, 1, 1.0), (1, 10, 1, 1.0)], "must be sorted by areaperil_id"),
    ([(1, 10, 1, 0.5), (1, 10, 2, 0.4)], "sum to 0.9"),
    ([(1, 10, 1, 0.5), (1, 10, 1, 0.5)], "intensity_bin_id 1 twice"),
    ([(1, 10, 9, 1.0)], "outside 1..4"),
])
def test_footprint_bad_event_is_reported(tmp_path: Path, rows: list, message: str) -> None:
    write_footprint_bin(tmp_path, np.array(rows, FOOTPRINT_CSV_DTYPE))
    footprint = open_footprint(tmp_path)
    with pytest.raises(OasisFileError, match=message) as info:
        footprint.event_block(np.array([1]))
    assert "event 1" in str(info.value) and "Fix:" in str(info.value)
    footprint.event_block(np.array([1]), validate=False)  # opt-out


def test_footprint_file_errors(tmp_path: Path) -> None:
    with pytest.raises(OasisFileError, match="footprint not found"):
        open_footprint(tmp_path)
    write_footprint_bin(tmp_path, FOOTPRINT_ROWS)
    (tmp_path / "footprint.idx").unlink()
    with pytest.raises(OasisFileError, match="no index file"):
        open_footprint(tmp_path)
    write_footprint_bin(tmp_path, FOOTPRINT_ROWS)
    with open(tmp_path / "footprint.bin", "r+b") as f:
        f.truncate(40)
    with pytest.raises(OasisFileError, match="points outside footprint.bin"):
        open_footprint(tmp_path)
    (tmp_path / "footprint.bin").unlink()
    (tmp_path / "footprint.idx").unlink()
    write_csv(tmp_path / "footprint.csv", FOOTPRINT_ROWS[::-1])
    with pytest.raises(OasisFileError, match="not sorted by event_id"):
        open_footprint(tmp_path)


# --------------------------------------------------------------------------- vulnerability


def dense(rows: np.ndarray, ids: list[int], n_damage: int = 3, n_intensity: int = 4) -> np.ndarray:
    out = np.zeros((len(ids), n_damage, n_intensity), np.float32)
    for v, i, d, p in rows.tolist():
        if v in ids and i <= n_intensity:
            out[ids.index(v), d - 1, i - 1] = p
    return out


@pytest.mark.parametrize("fmt", ["csv", "bin", "bin_idx", "bin_z", "parquet"])
def test_vulnerability_formats_agree(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        write_csv(tmp_path / "vulnerability.csv", VULN_ROWS)
    elif fmt == "bin":
        with open(tmp_path / "vulnerability.bin", "wb") as out:
            out.write(np.int32(3).tobytes() + VULN_ROWS.tobytes())
    elif fmt in ("bin_idx", "bin_z"):
        z = fmt == "bin_z"
        index, blocks, offset = [], [], 4
        for v in (2, 5):
            rows = VULN_ROWS[VULN_ROWS["vulnerability_id"] == v]
            body = np.empty(len(rows), VULNERABILITY_ROW_DTYPE)
            for name in body.dtype.names:
                body[name] = rows[name]
            block = zlib.compress(body.tobytes()) if z else body.tobytes()
            index.append((v, offset, len(block), body.nbytes if z else 0))
            blocks.append(block)
            offset += len(block)
        suffix = ".z" if z else ""
        with open(tmp_path / f"vulnerability.bin{suffix}", "wb") as out:
            out.write(np.int32(3).tobytes() + b"".join(blocks))
        np.array(index, VULNERABILITY_INDEX_DTYPE).tofile(tmp_path / f"vulnerability.idx{suffix}")
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        (tmp_path / "vulnerability_dataset.parquet").mkdir()
        arrays = dense(VULN_ROWS, [5, 2])  # stored out of order on purpose
        table = pa.table({"vulnerability_id": pa.array([5, 2], pa.int32()),
                          "vuln_array": pa.FixedSizeListArray.from_arrays(pa.array(arrays.ravel()), 12)})
        pq.write_table(table, tmp_path / "vulnerability_dataset.parquet" / "part_0.parquet")
        (tmp_path / "vulnerability_parquet_meta.json").write_text(json.dumps(
            {"num_vulnerability_id": 2, "num_intensity_bins": 4, "num_damage_bins": 3}))
    vuln = read_vulnerability(tmp_path, 4)
    assert vuln.ids.tolist() == [2, 5]
    np.testing.assert_array_equal(vuln.array, dense(VULN_ROWS, [2, 5]))
    one = read_vulnerability(tmp_path, 3, vulnerability_ids=[5])  # subset, fewer intensity bins
    np.testing.assert_array_equal(one.array, dense(VULN_ROWS, [5], n_intensity=3))
    assert one.index_of(np.array([5, 5])).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"vulnerability ids \[7\]"):
        one.index_of(np.array([7]))
    with pytest.raises(OasisFileError, match=r"vulnerability ids \[9\] are missing"):
        read_vulnerability(tmp_path, 4, vulnerability_ids=[2, 9])


def test_vulnerability_checks(tmp_path: Path) -> None:
    with pytest.raises(OasisFileError, match="vulnerability file not found"):
        read_vulnerability(tmp_path, 4)
    bad = VULN_ROWS.copy()
    bad["probability"][0] = 0.4
    write_csv(tmp_path / "vulnerability.csv", bad)
    with pytest.raises(OasisFileError, match="vulnerability 2, intensity bin 1 sum to 0.9"):
        read_vulnerability(tmp_path, 4)
    bad = VULN_ROWS.copy()
    bad["damage_bin_id"][0] = 0
    with open(tmp_path / "vulnerability.bin", "wb") as out:
        out.write(np.int32(3).tobytes() + bad.tobytes())
    with pytest.raises(OasisFileError, match="damage_bin_id 0"):
        read_vulnerability(tmp_path, 4)


# --------------------------------------------------------------------------- damage bins, catalogue


def test_damage_bins_checks(tmp_path: Path) -> None:
    bins = np.array([(1, 0, 0, 0, 0), (2, 0, 0.5, 0.25, 0), (3, 0.5, 1, 0.75, 1)], DAMAGE_BIN_DICT_DTYPE)
    bins.tofile(tmp_path / "damage_bin_dict.bin")
    np.testing.assert_array_equal(read_damage_bins(tmp_path), bins)
    for field, row, value, message in [("bin_index", 1, 3, "bin_index 3 where 2"),
                                       ("interpolation", 2, 0.4, "outside"),
                                       ("damage_type", 0, 7, "damage_type 7")]:
        bad = bins.copy()
        bad[field][row] = value
        write_csv(tmp_path / "bad.csv", bad)
        with pytest.raises(OasisFileError, match=message):
            read_damage_bins(tmp_path / "bad.csv")


def test_date_algorithm_round_trip() -> None:
    rng = np.random.default_rng(3)
    years, months, days = rng.integers(1, 3000, 500), rng.integers(1, 13, 500), rng.integers(1, 29, 500)
    hours, minutes = rng.integers(0, 24, 500), rng.integers(0, 60, 500)
    plain = date_to_date_id(years, months, days)
    assert date_to_date_id(1, 1, 1)[()] == 306 and date_to_date_id(2, 1, 1)[()] == 671  # PiWind's occurrence
    for got, want in zip(date_id_to_date(plain), (years, months, days, 0, 0), strict=True):
        np.testing.assert_array_equal(got, want)
    granular = date_to_date_id(years, months, days, hours, minutes)
    np.testing.assert_array_equal(granular // 1440, plain)
    for got, want in zip(date_id_to_date(granular, granular=True), (years, months, days, hours, minutes), strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.all(np.diff(date_to_date_id(2000, 2, np.arange(1, 30))) == 1)  # leap day exists


def test_occurrence_formats(tmp_path: Path) -> None:
    write_csv(tmp_path / "occurrence_x.csv", np.array([(1, 2, 2001, 3, 4, 5, 6), (2, 3, 1999, 12, 31, 23, 59)],
                                                      dtype=[(n, "<i4") for n in "abcdefg"]),
              ["event_id", "period_no", "occ_year", "occ_month", "occ_day", "occ_hour", "occ_minute"])
    occ = read_occurrence(tmp_path, "x", no_of_periods=5)
    assert occ.granular and occ.date_algorithm and occ.no_of_periods == 5
    assert occ.records["occ_date_id"].tolist() == date_to_date_id([2001, 1999], [3, 12], [4, 31], [5, 23],
                                                                   [6, 59]).tolist()
    records = np.array([(1, 2, 10), (4, 1, 20)], OCCURRENCE_DTYPE)
    with open(tmp_path / "occurrence.bin", "wb") as out:
        out.write(np.array([0, 3], "<i4").tobytes() + records.tobytes())
    occ = read_occurrence(tmp_path)
    assert not occ.date_algorithm and occ.no_of_periods == 3
    np.testing.assert_array_equal(occ.records, records)
    with pytest.raises(OasisFileError, match="header says 3 periods"):
        read_occurrence(tmp_path, no_of_periods=4)
    with open(tmp_path / "occurrence.bin", "wb") as out:
        out.write(np.array([1, 1], "<i4").tobytes() + records.tobytes())
    with pytest.raises(OasisFileError, match="period_no 2 is outside 1..1"):
        read_occurrence(tmp_path)


def test_periods_returnperiods_quantiles_event_rates(tmp_path: Path) -> None:
    uniform = read_periods(tmp_path, 4)
    assert uniform["period_no"].tolist() == [1, 2, 3, 4] and np.allclose(uniform["weighting"], 0.25)
    np.array([(2, 0.5), (1, 0.5)], PERIODS_DTYPE).tofile(tmp_path / "periods.bin")
    assert read_periods(tmp_path, 2)["period_no"].tolist() == [1, 2]
    with pytest.raises(OasisFileError, match="each period 1..3"):
        read_periods(tmp_path, 3)
    np.array([100, 10, 1], "<i4").tofile(tmp_path / "returnperiods.bin")
    assert read_return_periods(tmp_path).tolist() == [100, 10, 1]
    np.array([10, 100], "<i4").tofile(tmp_path / "returnperiods.bin")
    with pytest.raises(OasisFileError, match="descending"):
        read_return_periods(tmp_path)
    np.array([0, 0.5, 1], "<f4").tofile(tmp_path / "quantile.bin")
    assert read_quantiles(tmp_path).tolist() == [0, 0.5, 1]
    np.array([0, 50], "<f4").tofile(tmp_path / "quantile.bin")
    with pytest.raises(OasisFileError, match=r"\[0, 1\]"):
        read_quantiles(tmp_path)
    assert len(read_event_rates(tmp_path)[0]) == 0
    (tmp_path / "event_rates.csv").write_text("EventIds,Event_rates\n5,0.1\n2,0.25\n")
    ids, rates = read_event_rates(tmp_path)
    assert ids.tolist() == [2, 5] and rates.tolist() == [np.float32(0.25), np.float32(0.1)]


def test_select_file_ids() -> None:
    model_settings = {"model_settings": {"event_set": {"default": "p"}, "event_occurrence_id": {"default": "lt"}}}
    assert select_file_ids(None, model_settings) == ("p", "lt")
    assert select_file_ids({"model_settings": {"event_set": "h"}}, model_settings) == ("h", "lt")
    assert select_file_ids() == (None, None)


def test_model_data_consistency(tmp_path: Path) -> None:
    write_footprint_bin(tmp_path, FOOTPRINT_ROWS)
    write_csv(tmp_path / "vulnerability.csv", VULN_ROWS)
    np.array([(1, 0, 0, 0, 0), (2, 0, 1, 0.5, 0)], DAMAGE_BIN_DICT_DTYPE).tofile(tmp_path / "damage_bin_dict.bin")
    with pytest.raises(ValueError, match="damage_bin_dict defines 2"):
        load_model_data(tmp_path)
    np.array([(1, 0, 0, 0, 0), (2, 0, 0.5, 0.25, 0), (3, 0.5, 1, 0.75, 0)],
             DAMAGE_BIN_DICT_DTYPE).tofile(tmp_path / "damage_bin_dict.bin")
    model = load_model_data(tmp_path)
    assert model.events is None and model.vulnerability.array.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="intensity bins"):
        ModelData(footprint=model.footprint, vulnerability=read_vulnerability(tmp_path, 3),
                  damage_bins=model.damage_bins)


# --------------------------------------------------------------------------- PiWind


@pytest.mark.reference
def test_piwind_bin_and_csv_agree(tmp_path: Path) -> None:
    """PiWind ships every file as .bin and .csv: both readings must give the same arrays."""
    piwind = require_shared("piwind") / "model_data" / "PiWind"
    settings = json.loads((require_shared("piwind") / "meta-data" / "model_settings.json").read_text())
    event_set, occurrence_id = select_file_ids(None, settings)
    assert (event_set, occurrence_id) == ("p", "lt")
    model = load_model_data(piwind, model_settings=settings)
    assert len(model.events) == 1447 and model.footprint.format == "bin"
    assert model.footprint.num_intensity_bins == 58 and len(model.footprint.event_ids) == 491
    assert model.vulnerability.array.shape == (len(model.vulnerability.ids), 12, 58)
    assert model.occurrence.no_of_periods == 1000 and model.occurrence.date_algorithm
    assert model.return_periods[0] == 5000 and model.quantiles.dtype == np.float32

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for name in ("footprint", "vulnerability", "damage_bin_dict", "events_p", "occurrence_lt", "returnperiods",
                 "quantile"):
        shutil.copy(piwind / f"{name}.csv", csv_dir / f"{name}.csv")
    from_csv = load_model_data(csv_dir, event_set="p", occurrence_id="lt")
    assert from_csv.footprint.format == "csv"
    np.testing.assert_array_equal(from_csv.events, model.events)
    np.testing.assert_array_equal(from_csv.damage_bins, model.damage_bins)
    np.testing.assert_array_equal(from_csv.vulnerability.ids, model.vulnerability.ids)
    np.testing.assert_array_equal(from_csv.vulnerability.array, model.vulnerability.array)
    np.testing.assert_array_equal(from_csv.occurrence.records, model.occurrence.records)
    np.testing.assert_array_equal(from_csv.return_periods, model.return_periods)
    np.testing.assert_array_equal(from_csv.quantiles, model.quantiles)
    events = model.events
    a, b = model.footprint.event_block(events), from_csv.footprint.event_block(events)
    np.testing.assert_array_equal(a.event_ptr, b.event_ptr)
    np.testing.assert_array_equal(a.areaperil_id, b.areaperil_id)
    np.testing.assert_array_equal(a.intensity_bin_id, b.intensity_bin_id)
    np.testing.assert_array_equal(a.probability, b.probability)
    assert read_events(piwind, "p").dtype == np.int32
