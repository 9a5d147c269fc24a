"""Tests for perilflow.kernel.oasis: record layouts, CSV/.bin readers and writers, validation.

Two kinds of tests:

* reference tests (marker ``reference``) round-trip the Oasis input files of the public
  FM validation suites in ``../shared/fm-validation`` (CSV -> .bin -> CSV must give the
  same array bit for bit) and check that every suite passes validation;
* synthetic tests write small files to ``tmp_path`` to pin down error messages, byte
  layouts, step-profile detection, ri_layers.json resolution and atomic writes.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perilflow.kernel.oasis import dtypes, files
from perilflow.kernel.oasis.errors import OasisFileError
from perilflow.kernel.oasis.files import (
    RiPass,
    convert,
    read_fm_inputs,
    read_fm_profile,
    read_ri_layers,
    read_table,
    validate_fm_inputs,
    write_bin,
    write_csv,
)
from tests.conftest import require_shared

# --------------------------------------------------------------------------- helpers


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same dtype and the same bytes (so -0.0 vs 0.0 or a float32 rounding would fail)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def write_text(path: Path, text: str) -> Path:
    """Write a small CSV fixture (dedented lines joined with newlines)."""
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary files left in ``folder`` by the atomic writers."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def fm_folder(tmp_path: Path) -> Path:
    """A small, consistent FM input folder: 3 items on 2 coverages, two levels, one layer."""
    write_text(tmp_path / "items.csv", """
        item_id,coverage_id,areaperil_id,vulnerability_id,group_id
        1,1,10,5,7
        2,1,11,5,7
        3,2,12,6,8
    """)
    write_text(tmp_path / "coverages.csv", """
        coverage_id,tiv
        1,1000.0
        2,250.5
    """)
    write_text(tmp_path / "fm_programme.csv", """
        from_agg_id,level_id,to_agg_id
        1,1,1
        2,1,2
        3,1,3
        1,2,1
        2,2,1
        3,2,1
    """)
    write_text(tmp_path / "fm_policytc.csv", """
        level_id,agg_id,layer_id,profile_id
        1,1,1,1
        1,2,1,1
        1,3,1,1
        2,1,1,2
    """)
    write_text(tmp_path / "fm_profile.csv", """
        profile_id,calcrule_id,deductible1,deductible2,deductible3,attachment1,limit1,share1,share2,share3
        1,100,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0
        2,14,0.0,0.0,0.0,0.0,900.0,0.0,0.0,0.0
    """)
    write_text(tmp_path / "fm_xref.csv", """
        output,agg_id,layer_id
        1,1,1
        2,2,1
        3,3,1
    """)
    return tmp_path


# --------------------------------------------------------------------------- byte layouts


def test_every_layout_is_packed_and_little_endian() -> None:
    for name, dtype in dtypes.FILE_DTYPES.items():
        fields = [dtype.fields[field][0] for field in dtype.names]
        assert dtype.itemsize == sum(f.itemsize for f in fields), name
        assert all(f.str.startswith("<") for f in fields), name


@pytest.mark.parametrize(
    ("name", "itemsize"),
    [("fm_programme", 12), ("fm_policytc", 16), ("fm_profile", 40), ("fm_profile_step", 72),
     ("items", 20), ("coverages", 8), ("fm_xref", 12), ("gulsummaryxref", 12), ("fmsummaryxref", 12)],
)
def test_record_sizes(name: str, itemsize: int) -> None:
    assert dtypes.FILE_DTYPES[name].itemsize == itemsize


def test_field_names_are_the_csv_headers() -> None:
    assert dtypes.ITEMS_DTYPE.names == ("item_id", "coverage_id", "areaperil_id", "vulnerability_id", "group_id")
    assert dtypes.FM_XREF_DTYPE.names == ("output", "agg_id", "layer_id")
    assert dtypes.FM_PROFILE_STEP_DTYPE.names == dtypes.FM_PROFILE_FIELDS + dtypes.FM_STEP_FIELDS
    assert dtypes.LOSS_DTYPE is np.float64


def test_known_records_have_the_expected_bytes(tmp_path: Path) -> None:
    programme = np.array([(1, 2, 3)], dtype=dtypes.FM_PROGRAMME_DTYPE)
    write_bin(tmp_path / "fm_programme.bin", programme, "fm_programme")
    assert (tmp_path / "fm_programme.bin").read_bytes() == struct.pack("<3i", 1, 2, 3)

    items = np.array([(1, 2, 0xFFFFFFFF, -4, 481853237)], dtype=dtypes.ITEMS_DTYPE)
    write_bin(tmp_path / "items.bin", items, "items")
    assert (tmp_path / "items.bin").read_bytes() == struct.pack("<iIIiI", 1, 2, 0xFFFFFFFF, -4, 481853237)

    profile = np.zeros(1, dtype=dtypes.FM_PROFILE_DTYPE)
    profile[0] = (7, 12, 0.5, 0.0, 0.0, 0.0, 1e6, 0.25, 1.0, 1.0)
    write_bin(tmp_path / "fm_profile.bin", profile, "fm_profile")
    assert (tmp_path / "fm_profile.bin").read_bytes() == struct.pack(
        "<2i8f", 7, 12, 0.5, 0.0, 0.0, 0.0, 1e6, 0.25, 1.0, 1.0
    )


def test_coverages_bin_holds_only_tiv(tmp_path: Path) -> None:
    coverages = np.array([(1, 10.5), (2, 0.0), (3, 3e7)], dtype=dtypes.COVERAGES_DTYPE)
    path = write_bin(tmp_path / "coverages.bin", coverages, "coverages")
    assert path.read_bytes() == struct.pack("<3f", 10.5, 0.0, 3e7)
    assert_same(read_table(tmp_path, "coverages"), coverages)


def test_coverages_bin_needs_ids_in_position_order(tmp_path: Path) -> None:
    coverages = np.array([(2, 1.0), (1, 2.0)], dtype=dtypes.COVERAGES_DTYPE)
    with pytest.raises(OasisFileError, match="should be 1"):
        write_bin(tmp_path / "coverages.bin", coverages, "coverages")
    assert not (tmp_path / "coverages.bin").exists()


def test_truncated_bin_is_reported(tmp_path: Path) -> None:
    (tmp_path / "fm_programme.bin").write_bytes(struct.pack("<4i", 1, 1, 1, 2))
    with pytest.raises(OasisFileError) as caught:
        read_table(tmp_path, "fm_programme")
    assert "fm_programme.bin" in str(caught.value)
    assert "not a multiple of the 12-byte" in str(caught.value)


# --------------------------------------------------------------------------- CSV parsing


def test_columns_matched_by_name_extra_columns_ignored(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_xref.csv", """
        layer_id,note,agg_id,output
        1,first,5,1
        2,second,5,2
    """)
    xref = read_table(tmp_path, "fm_xref")
    assert_same(xref, np.array([(1, 5, 1), (2, 5, 2)], dtype=dtypes.FM_XREF_DTYPE))


def test_bin_is_preferred_over_csv(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_xref.csv", "output,agg_id,layer_id\n1,1,1")
    write_bin(tmp_path / "fm_xref.bin", np.array([(9, 9, 9)], dtype=dtypes.FM_XREF_DTYPE), "fm_xref")
    assert read_table(tmp_path, "fm_xref")["output"].tolist() == [9]


def test_missing_file(tmp_path: Path) -> None:
    assert read_table(tmp_path, "gulsummaryxref", required=False) is None
    with pytest.raises(OasisFileError, match="gulsummaryxref.bin and gulsummaryxref.csv"):
        read_table(tmp_path, "gulsummaryxref")
    with pytest.raises(ValueError, match="unknown Oasis file name"):
        read_table(tmp_path, "itmes")


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "items.csv", """
        item_id,coverage_id,areaperil_id,vulnerability_id
        1,1,1,1
    """)
    with pytest.raises(OasisFileError) as caught:
        read_table(tmp_path, "items")
    message = str(caught.value)
    assert str(path) in message
    assert "missing column 'group_id'" in message
    assert "item_id,coverage_id,areaperil_id,vulnerability_id,group_id" in message  # the fix
    assert caught.value.column == "group_id"


def test_missing_column_hints_at_letter_case(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_xref.csv", "Output,agg_id,layer_id\n1,1,1")
    with pytest.raises(OasisFileError, match="found 'Output': names are case-sensitive"):
        read_table(tmp_path, "fm_xref")


def test_text_in_numeric_column_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "fm_programme.csv", """
        from_agg_id,level_id,to_agg_id
        1,1,1
        2,1,abc
        3,1,xyz
    """)
    with pytest.raises(OasisFileError) as caught:
        read_table(tmp_path, "fm_programme")
    message = str(caught.value)
    assert message.startswith(f"{path}, row 2 (line 3), column 'to_agg_id': 'abc' is not a number")
    assert "(and 1 more like it)" in message
    assert "Fix:" in message
    assert (caught.value.row, caught.value.column) == (2, "to_agg_id")


@pytest.mark.parametrize(
    ("cells", "row", "expected"),
    [
        (["1", ""], 2, "the cell is empty"),
        (["1", "1.5"], 2, "1.5 is not a whole number"),
        (["1", "NA"], 2, "'NA' is not a number"),
        (["True", "False"], 1, "'True' is not a number"),  # pandas reads such a column as booleans
        (["1", "4294967296"], 2, "4294967296 does not fit in uint32"),
        (["-1", "1"], 1, "-1 does not fit in uint32"),
    ],
)
def test_bad_integer_cells(tmp_path: Path, cells: list[str], row: int, expected: str) -> None:
    lines = ["item_id,coverage_id,areaperil_id,vulnerability_id,group_id"]
    lines += [f"{i},{cell},1,1,1" for i, cell in enumerate(cells, start=1)]
    write_text(tmp_path / "items.csv", "\n".join(lines))
    with pytest.raises(OasisFileError) as caught:
        read_table(tmp_path, "items")
    assert expected in str(caught.value)
    assert (caught.value.row, caught.value.column) == (row, "coverage_id")


def test_integers_written_as_exact_floats_are_accepted(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_policytc.csv", """
        level_id,agg_id,layer_id,profile_id
        1.0,2,3.000,4e0
    """)
    assert read_table(tmp_path, "fm_policytc").tolist() == [(1, 2, 3, 4)]


@pytest.mark.parametrize(("cell", "expected"), [("1e39", "too large for float32"), ("inf", "not a finite")])
def test_bad_float_cells(tmp_path: Path, cell: str, expected: str) -> None:
    write_text(tmp_path / "coverages.csv", f"coverage_id,tiv\n1,5\n2,{cell}")
    with pytest.raises(OasisFileError, match=expected) as caught:
        read_table(tmp_path, "coverages")
    assert (caught.value.row, caught.value.column) == (2, "tiv")


def test_header_only_and_trailing_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "fm_xref.csv").write_text("output,agg_id,layer_id\n")
    assert len(read_table(tmp_path, "fm_xref")) == 0
    (tmp_path / "fm_xref.csv").write_text("output,agg_id,layer_id\n1,1,1\n\n\n")
    assert read_table(tmp_path, "fm_xref").tolist() == [(1, 1, 1)]
    (tmp_path / "fm_xref.csv").write_text("output,agg_id,layer_id\n1,1,1\n\n2,2,1\n")
    with pytest.raises(OasisFileError, match=r"row 2 \(line 3\): the row is empty"):
        read_table(tmp_path, "fm_xref")
    (tmp_path / "fm_xref.csv").write_text("")
    with pytest.raises(OasisFileError, match="the file is empty"):
        read_table(tmp_path, "fm_xref")


def test_utf8_bom_and_spaces_in_header(tmp_path: Path) -> None:
    (tmp_path / "fm_xref.csv").write_bytes(b"\xef\xbb\xbfoutput, agg_id ,layer_id\n1, 2 ,3\n")
    assert read_table(tmp_path, "fm_xref").tolist() == [(1, 2, 3)]


# --------------------------------------------------------------------------- single-file checks


@pytest.mark.parametrize(
    ("ids", "row", "expected"),
    [
        ([1, 2, 4], 3, "item_id 4 is outside 1..3"),
        ([1, 2, 2], 3, "item_id 2 repeats the id of row 2 (line 3)"),
        ([0, 1, 2], 1, "item_id 0 is outside 1..3"),
    ],
)
def test_item_ids_must_be_contiguous_from_one(tmp_path: Path, ids: list[int], row: int, expected: str) -> None:
    lines = ["item_id,coverage_id,areaperil_id,vulnerability_id,group_id"]
    lines += [f"{i},1,1,1,1" for i in ids]
    write_text(tmp_path / "items.csv", "\n".join(lines))
    with pytest.raises(OasisFileError) as caught:
        read_table(tmp_path, "items")
    assert expected in str(caught.value)
    assert "items.csv" in str(caught.value)
    assert caught.value.row == row


def test_item_ids_in_any_order_are_accepted(tmp_path: Path) -> None:
    write_text(tmp_path / "items.csv", """
        item_id,coverage_id,areaperil_id,vulnerability_id,group_id
        3,1,1,1,1
        1,1,1,1,1
        2,1,1,1,1
    """)
    assert read_table(tmp_path, "items")["item_id"].tolist() == [3, 1, 2]


def test_coverage_ids_must_equal_position(tmp_path: Path) -> None:
    write_text(tmp_path / "coverages.csv", "coverage_id,tiv\n1,1\n3,1\n")
    with pytest.raises(OasisFileError, match="coverage_id 3 should be 2") as caught:
        read_table(tmp_path, "coverages")
    assert caught.value.row == 2


def test_duplicate_profile_ids_are_rejected(tmp_path: Path) -> None:
    header = "profile_id,calcrule_id,deductible1,deductible2,deductible3,attachment1,limit1,share1,share2,share3"
    write_text(tmp_path / "fm_profile.csv", f"{header}\n1,12,1,0,0,0,0,0,0,0\n1,14,0,0,0,0,5,0,0,0")
    with pytest.raises(OasisFileError, match=r"profile_id 1 is already defined on row 1 \(line 2\)"):
        read_fm_profile(tmp_path)


# --------------------------------------------------------------------------- fm_profile and steps

STEP_HEADER = (
    "profile_id,calcrule_id,deductible1,deductible2,deductible3,attachment1,limit1,share1,share2,share3,"
    "step_id,trigger_start,trigger_end,payout_start,payout_end,limit2,scale1,scale2"
)


def test_fm_profile_csv_with_step_columns_is_stepped(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_profile.csv", f"""
        {STEP_HEADER}
        1,100,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0
        2,28,0,0,0,0,0,0,0,0,1,0.0,0.3,10000,1.0,0,0,0
        2,28,0,0,0,0,0,0,0,0,2,0.3,1.0,20000,1.0,0,0,0
    """)
    profiles, stepped = read_fm_profile(tmp_path)
    assert stepped
    assert profiles.dtype == dtypes.FM_PROFILE_STEP_DTYPE
    assert profiles["step_id"].tolist() == [1, 1, 2]
    assert profiles["trigger_end"].tolist() == [0.0, np.float32(0.3), 1.0]
    # Reading it with the plain layout would drop the steps, so it is refused.
    with pytest.raises(OasisFileError, match="carries step columns"):
        read_table(tmp_path, "fm_profile")


def test_plain_fm_profile_is_widened(fm_folder: Path) -> None:
    profiles, stepped = read_fm_profile(fm_folder)
    assert not stepped
    assert profiles.dtype == dtypes.FM_PROFILE_STEP_DTYPE
    assert profiles["step_id"].tolist() == [1, 1]
    assert all((profiles[field] == 0).all() for field in dtypes.FM_STEP_FIELDS if field != "step_id")
    assert profiles["limit1"].tolist() == [0.0, 900.0]


def test_fm_profile_step_file_takes_priority(fm_folder: Path) -> None:
    write_text(fm_folder / "fm_profile_step.csv", f"""
        {STEP_HEADER}
        5,28,0,0,0,0,0,0,0,0,1,0,1,100,0,0,0,0
    """)
    profiles, stepped = read_fm_profile(fm_folder)
    assert stepped
    assert profiles["profile_id"].tolist() == [5]


def test_duplicate_profile_steps_are_rejected(tmp_path: Path) -> None:
    write_text(tmp_path / "fm_profile_step.csv", f"""
        {STEP_HEADER}
        5,28,0,0,0,0,0,0,0,0,1,0,1,100,0,0,0,0
        5,28,0,0,0,0,0,0,0,0,1,0,1,100,0,0,0,0
    """)
    with pytest.raises(OasisFileError, match=r"step_id 1 is already defined on row 1 \(line 2\)"):
        read_fm_profile(tmp_path)


# --------------------------------------------------------------------------- cross-file checks


def test_consistent_folder_validates(fm_folder: Path) -> None:
    inputs = read_fm_inputs(fm_folder)
    assert len(inputs.items) == 3 and len(inputs.coverages) == 2
    assert inputs.paths["fm_profile"] == fm_folder / "fm_profile.csv"
    validate_fm_inputs(fm_folder)


def test_profile_referenced_but_absent(fm_folder: Path) -> None:
    write_text(fm_folder / "fm_policytc.csv", """
        level_id,agg_id,layer_id,profile_id
        1,1,1,1
        1,2,1,9
        1,3,1,1
        2,1,1,2
    """)
    with pytest.raises(OasisFileError) as caught:
        validate_fm_inputs(fm_folder)
    message = str(caught.value)
    assert str(fm_folder / "fm_policytc.csv") in message
    assert "row 2 (line 3), column 'profile_id': profile_id 9 is not defined in fm_profile.csv" in message


def test_policytc_level_missing_from_programme(fm_folder: Path) -> None:
    with (fm_folder / "fm_policytc.csv").open("a") as handle:
        handle.write("3,1,1,2\n")
    with pytest.raises(OasisFileError, match=r"row 5 \(line 6\), column 'level_id': level_id 3 is not a level"):
        validate_fm_inputs(fm_folder)


def test_item_coverage_missing_from_coverages(fm_folder: Path) -> None:
    write_text(fm_folder / "coverages.csv", "coverage_id,tiv\n1,1000.0")
    with pytest.raises(OasisFileError, match="items.csv, row 3 .*coverage_id 2 is not in coverages.csv"):
        validate_fm_inputs(fm_folder)


def test_xref_must_point_at_programme_nodes_and_layers(fm_folder: Path) -> None:
    write_text(fm_folder / "fm_xref.csv", "output,agg_id,layer_id\n1,1,1\n2,7,1")
    with pytest.raises(OasisFileError, match="fm_xref.csv, row 2 .*agg_id 7 is neither"):
        validate_fm_inputs(fm_folder)
    write_text(fm_folder / "fm_xref.csv", "output,agg_id,layer_id\n1,1,2")
    with pytest.raises(OasisFileError, match="layer_id 2 is not a layer of fm_policytc.csv"):
        validate_fm_inputs(fm_folder)


def test_programme_lowest_level_must_start_from_items(fm_folder: Path) -> None:
    with (fm_folder / "fm_programme.csv").open("a") as handle:
        handle.write("4,1,3\n")
    with pytest.raises(OasisFileError, match=r"row 7 .*from_agg_id 4 at the lowest level \(1\)"):
        validate_fm_inputs(fm_folder)


# --------------------------------------------------------------------------- ri_layers.json


def write_layers(folder: Path, layers: dict) -> None:
    (folder / "ri_layers.json").write_text(json.dumps(layers))


def test_no_ri_layers_means_no_passes(tmp_path: Path) -> None:
    assert read_ri_layers(tmp_path) == []


def test_ri_layers_foreign_absolute_directory_resolves_by_basename(tmp_path: Path) -> None:
    for name in ("RI_1", "RI_2", "custom", "RI_10"):
        (tmp_path / name).mkdir()
    write_layers(tmp_path, {
        "10": {"inuring_priority": 1, "risk_level": "SEL", "directory": "C:\\runs\\x\\RI_10"},
        "2": {"inuring_priority": 1, "risk_level": "POL", "directory": "custom"},
        "1": {"inuring_priority": 2, "risk_level": "LOC",
              "directory": "/home/someone/else/validation/reinsurance1/runs/RI_1"},
        "3": {"inuring_priority": 1, "risk_level": "ACC", "directory": "/nowhere/else"},
    })
    (tmp_path / "RI_3").mkdir()
    passes = read_ri_layers(tmp_path)
    assert passes == [
        RiPass(2, 1, "POL", tmp_path / "custom"),  # relative directory that exists
        RiPass(3, 1, "ACC", tmp_path / "RI_3"),  # neither exists: RI_<n>
        RiPass(10, 1, "SEL", tmp_path / "RI_10"),  # Windows path: basename; 10 sorts after 3
        RiPass(1, 2, "LOC", tmp_path / "RI_1"),  # foreign absolute path: basename
    ]


def test_ri_layers_missing_folder_names_file_and_key(tmp_path: Path) -> None:
    write_layers(tmp_path, {"1": {"inuring_priority": 1, "risk_level": "LOC", "directory": "/x/RI_9"}})
    with pytest.raises(OasisFileError) as caught:
        read_ri_layers(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "ri_layers.json") in message
    assert "layer '1'" in message and "'/x/RI_9' not found" in message


def test_ri_layers_relative_directory_cannot_escape(tmp_path: Path) -> None:
    inner = tmp_path / "input"
    inner.mkdir()
    (tmp_path / "RI_1").mkdir()  # outside input/: must not be picked through "../RI_1"
    write_layers(inner, {"1": {"inuring_priority": 1, "risk_level": "LOC", "directory": "../RI_1"}})
    (inner / "RI_1").mkdir()
    assert read_ri_layers(inner)[0].directory == inner / "RI_1"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"one": {}}', "key 'one' is not a pass number"),
        ('{"1": {"inuring_priority": "high", "risk_level": "LOC"}}', "inuring_priority 'high' is not an integer"),
    ],
)
def test_ri_layers_malformed(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "ri_layers.json").write_text(content)
    with pytest.raises(OasisFileError, match=expected):
        read_ri_layers(tmp_path)


# --------------------------------------------------------------------------- writers


def test_wrong_dtype_leaves_no_file(tmp_path: Path) -> None:
    wrong = np.zeros(3, dtype=[("from_agg_id", "<i4"), ("level", "<i4"), ("to_agg_id", "<i4")])
    for writer in (write_bin, write_csv):
        target = tmp_path / f"fm_programme.{'bin' if writer is write_bin else 'csv'}"
        with pytest.raises(TypeError, match="fields missing \\['level_id'\\]"):
            writer(target, wrong, "fm_programme")
        assert not target.exists()
    floats_for_ids = np.zeros(1, dtype=[("output", "<f8"), ("agg_id", "<i4"), ("layer_id", "<i4")])
    with pytest.raises(TypeError, match="'output' has type float64"):
        write_bin(tmp_path / "fm_xref.bin", floats_for_ids, "fm_xref")
    assert os.listdir(tmp_path) == []


def test_value_that_does_not_fit_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "fm_xref.bin"
    target.write_bytes(b"old")
    big = np.array([(1, 2**40, 1)], dtype=[("output", "<i8"), ("agg_id", "<i8"), ("layer_id", "<i8")])
    with pytest.raises(OasisFileError, match="does not fit in int32"):
        write_bin(target, big, "fm_xref")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_failure_mid_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "fm_programme.csv"
    target.write_text("previous content\n")
    array = np.array([(1, 1, 1), (2, 1, 1)], dtype=dtypes.FM_PROGRAMME_DTYPE)

    def write_half_then_fail(self, handle, **kwargs):
        handle.write("from_agg_id,level_id,to_agg_id\n1,1,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_csv(target, array)
    assert target.read_text() == "previous content\n"
    assert leftovers(tmp_path) == []


def test_writers_accept_wider_types_that_fit(tmp_path: Path) -> None:
    wide = np.array([(3, 1, 2)], dtype=[("to_agg_id", "<i8"), ("from_agg_id", "<u8"), ("level_id", "<i2")])
    write_bin(tmp_path / "fm_programme.bin", wide, "fm_programme")
    assert read_table(tmp_path, "fm_programme").tolist() == [(1, 2, 3)]


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fm_xref.csv", np.zeros(1, dtypes.FM_XREF_DTYPE))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_convert_infers_layout_from_name(tmp_path: Path, fm_folder: Path) -> None:
    convert(fm_folder / "items.csv", tmp_path / "items.bin")
    convert(tmp_path / "items.bin", tmp_path / "items.csv")
    assert_same(read_table(tmp_path / "items.csv", "items"), read_table(fm_folder / "items.csv", "items"))


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a Python subprocess that imports perilflow the way this test process does.

    ``cwd`` should be a neutral folder: ``python -m``/``-c`` put the working directory first
    on sys.path, where the repo root's own ``perilflow/`` folder would shadow the package.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_convert_command_line(tmp_path: Path, fm_folder: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    module = ["-m", "perilflow.kernel.oasis.convert"]
    done = run_python([*module, str(fm_folder / "coverages.csv"), str(out / "coverages.bin")], cwd=out)
    assert done.returncode == 0, done.stderr
    assert (out / "coverages.bin").stat().st_size == 8
    failed = run_python([*module, str(fm_folder / "nothere.csv"), str(out / "x.bin"), "--name", "items"],
                        cwd=out)
    assert failed.returncode == 1 and "nothere.csv" in failed.stderr


float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
int32s = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(int32s, int32s, *[float32s] * 8, int32s, *[float32s] * 7), max_size=20))
def test_random_profiles_round_trip_exactly(rows: list[tuple]) -> None:
    array = np.array(rows, dtype=dtypes.FM_PROFILE_STEP_DTYPE)
    with tempfile.TemporaryDirectory() as folder:
        csv_path = write_csv(Path(folder) / "p.csv", array)
        bin_path = write_bin(Path(folder) / "p.bin", array, "fm_profile_step")
        # Duplicate (profile_id, step_id) pairs are rejected on read, so compare only valid inputs.
        keys = {(row[0], row[10]) for row in rows}
        if len(keys) == len(rows):
            assert_same(read_table(csv_path, "fm_profile_step"), array)
            assert_same(read_table(bin_path, "fm_profile_step"), array)


def test_every_float32_bit_pattern_sample_round_trips(tmp_path: Path) -> None:
    bits = np.random.default_rng(7).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    coverages = np.zeros(len(values), dtype=dtypes.COVERAGES_DTYPE)
    coverages["coverage_id"] = np.arange(1, len(values) + 1)
    coverages["tiv"] = values
    assert_same(read_table(write_csv(tmp_path / "coverages.csv", coverages), "coverages"), coverages)


def test_million_row_programme_reads_fast(tmp_path: Path) -> None:
    count = 1_000_000
    programme = np.empty(count, dtype=dtypes.FM_PROGRAMME_DTYPE)
    programme["from_agg_id"] = np.arange(1, count + 1)
    programme["level_id"] = 1
    programme["to_agg_id"] = np.arange(count) // 4 + 1
    path = write_csv(tmp_path / "fm_programme.csv", programme)
    start = time.perf_counter()
    loaded = read_table(path, "fm_programme")
    elapsed = time.perf_counter() - start
    assert_same(loaded, programme)
    assert elapsed < 2.0, f"reading 1,000,000 rows took {elapsed:.2f} s"


# --------------------------------------------------------------------------- errors and imports


def test_error_survives_pickling() -> None:
    error = OasisFileError("/in/items.csv", "bad", row=3, column="item_id", fix="do this.")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) == "/in/items.csv, row 3 (line 4), column 'item_id': bad. Fix: do this."
    assert (clone.row, clone.column) == (3, "item_id")
    assert str(OasisFileError("/in/items.bin", "bad", row=3)) == "/in/items.bin, record 3: bad."


def test_oasis_package_does_not_import_airflow(tmp_path: Path) -> None:
    code = (
        "import perilflow.kernel.oasis, perilflow.kernel.oasis.convert, sys; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'); "
        "assert not bad, bad"
    )
    result = run_python(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- reference files

# (folder inside fm-validation, file stem, layout): the stepped suite stores steps in fm_profile.csv.
REFERENCE_FILES = [
    *[("insurance_and_step/expected", name, name)
      for name in ("items", "coverages", "fm_programme", "fm_policytc", "fm_xref")],
    ("insurance_and_step/expected", "fm_profile", "fm_profile_step"),
    *[("reinsurance1/expected", name, name)
      for name in ("items", "coverages", "fm_programme", "fm_policytc", "fm_profile", "fm_xref")],
    *[("reinsurance1/expected/RI_1", name, name)
      for name in ("fm_programme", "fm_policytc", "fm_profile", "fm_xref")],
]


@pytest.mark.reference
@pytest.mark.parametrize(("folder", "stem", "layout"), REFERENCE_FILES)
def test_reference_file_round_trips(tmp_path: Path, folder: str, stem: str, layout: str) -> None:
    source = require_shared(f"fm-validation/{folder}/{stem}.csv")
    original = read_table(source, layout)
    assert len(original) > 0

    # Independent check of the parse: pandas' own reading, cast to the layout.
    frame = pd.read_csv(source)
    for field in original.dtype.names:
        expected = frame[field].to_numpy(dtype=np.float64).astype(original.dtype.fields[field][0])
        np.testing.assert_array_equal(original[field], expected, err_msg=field)

    bin_path = write_bin(tmp_path / f"{layout}.bin", original, layout)
    record = 4 if layout == "coverages" else dtypes.FILE_DTYPES[layout].itemsize
    assert bin_path.stat().st_size == len(original) * record
    from_bin = read_table(bin_path, layout)
    assert_same(from_bin, original)

    csv_path = write_csv(tmp_path / f"{layout}.csv", from_bin)
    assert_same(read_table(csv_path, layout), original)


@pytest.mark.reference
def test_reference_profiles_stepped_or_not() -> None:
    profiles, stepped = read_fm_profile(require_shared("fm-validation/insurance_and_step/expected"))
    assert stepped and (profiles["step_id"] > 1).any()
    profiles, stepped = read_fm_profile(require_shared("fm-validation/reinsurance1/expected/RI_1"))
    assert not stepped and (profiles["step_id"] == 1).all()


@pytest.mark.reference
def test_reference_ri_layers_resolve_to_local_folders() -> None:
    folder = require_shared("fm-validation/reinsurance1/expected")
    passes = read_ri_layers(folder)
    assert [(p.number, p.inuring_priority, p.risk_level) for p in passes] == [
        (1, 1, "LOC"), (2, 1, "POL"), (3, 1, "ACC"), (4, 1, "SEL"),
    ]
    assert [p.directory for p in passes] == [folder / f"RI_{n}" for n in range(1, 5)]


@pytest.mark.reference
def test_every_reference_folder_validates() -> None:
    root = require_shared("fm-validation")
    folders = sorted({p.parent for p in root.glob("*/expected*/**/fm_programme.csv")})
    assert len(folders) > 20
    for folder in folders:
        inputs = read_fm_inputs(folder)
        assert (inputs.items is None) == folder.name.startswith("RI_"), folder
        for ri_pass in read_ri_layers(folder):
            validate_fm_inputs(ri_pass.directory)


def test_module_exports() -> None:
    assert set(files.__all__) <= set(dir(files))


def test_ri_layers_round_trip_with_relative_directories(tmp_path):
    from perilflow.kernel.oasis.files import RiPass, read_ri_layers, write_ri_layers

    for n in (1, 2):
        (tmp_path / f"RI_{n}").mkdir()
    passes = [RiPass(2, 1, "POL", tmp_path / "RI_2"), RiPass(1, 1, "LOC", tmp_path / "RI_1")]
    write_ri_layers(tmp_path, passes)
    text = (tmp_path / "ri_layers.json").read_text()
    assert '"directory": "RI_1"' in text and str(tmp_path) not in text
    assert [(p.number, p.risk_level, p.directory) for p in read_ri_layers(tmp_path)] == [
        (1, "LOC", tmp_path / "RI_1"), (2, "POL", tmp_path / "RI_2")]


def test_ri_layers_outside_the_input_folder_is_refused(tmp_path):
    from perilflow.kernel.oasis.errors import OasisFileError
    from perilflow.kernel.oasis.files import RiPass, write_ri_layers

    (tmp_path / "in").mkdir()
    with pytest.raises(OasisFileError, match="outside"):
        write_ri_layers(tmp_path / "in", [RiPass(1, 1, "LOC", tmp_path / "elsewhere")])
    assert not (tmp_path / "in" / "ri_layers.json").exists()
