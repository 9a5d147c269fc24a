"""write_frame_csv writes the bytes ``DataFrame.to_csv(index=False)`` writes, whatever the column types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.kernel.inputs.gul import write_frame_csv


def pandas_bytes(frame: pd.DataFrame, path: Path, float_format: str | None = None) -> bytes:
    frame.to_csv(path, index=False, lineterminator="\n", float_format=float_format)
    return path.read_bytes()


def edge_frame(rows: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    tiv = rng.choice([170300.0, 0.0, -0.0, 1e-7, 1.5e16, np.nan, 123456.789, -2.5], rows)
    peril = rng.choice(np.array(["WTC", "WSS", None, "", "OO1"], dtype=object), rows)
    category = pd.Categorical(rng.choice(["A1", "B2", "C3"], rows), categories=["Z9", "A1", "B2", "C3"])
    category[::7] = np.nan
    nullable = pd.array(rng.integers(0, 5, rows), dtype="Int64")
    nullable[::5] = pd.NA
    mixed = rng.choice(np.array([1, 1.0, "1", True, None], dtype=object), rows)
    return pd.DataFrame({
        "loc_id": np.arange(1, rows + 1), "hazard_group_id": rng.integers(0, 2**32, rows, dtype=np.uint32),
        "tiv": tiv, "ratio": tiv.astype(np.float32), "peril_id": peril, "AccNumber": category,
        "flag": rng.integers(0, 2, rows).astype(bool), "nullable": nullable, "mixed": mixed,
        "text": pd.array(rng.choice(["a", "b", None], rows), dtype="string"),
        "nullable_float": pd.array(rng.choice([1.0, 2.5, None], rows), dtype="Float64"),
        "nullable_bool": pd.array(rng.choice([True, False, None], rows), dtype="boolean"),
        "nothing": np.full(rows, None, dtype=object),
    })


@pytest.mark.parametrize("float_format", [None, "%.6f"])
def test_bytes_are_those_of_to_csv(tmp_path: Path, float_format: str | None) -> None:
    frame = edge_frame()
    written = write_frame_csv(tmp_path / "ours.csv", frame, float_format=float_format)
    assert written.read_bytes() == pandas_bytes(frame, tmp_path / "pandas.csv", float_format)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_text_needing_quotes_and_empty_frames(tmp_path: Path) -> None:
    quoted = pd.DataFrame({"a": [1, 2], "address": ['1 "High" Street', "Flat 2, Mill Lane"]})
    assert (write_frame_csv(tmp_path / "q.csv", quoted).read_bytes()
            == pandas_bytes(quoted, tmp_path / "q_pandas.csv"))
    quoted_category = quoted.astype({"address": "category"})
    assert (write_frame_csv(tmp_path / "qc.csv", quoted_category).read_bytes()
            == pandas_bytes(quoted_category, tmp_path / "qc_pandas.csv"))
    empty = edge_frame().iloc[:0]
    assert write_frame_csv(tmp_path / "e.csv", empty).read_bytes() == pandas_bytes(empty, tmp_path / "e_pandas.csv")
