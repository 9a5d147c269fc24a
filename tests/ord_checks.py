"""Checks on a run's files shared by the DAG, integration and API tests.

``assert_alt_matches_reference`` compares an output folder's ALT with the Oasis reference
engine's for PiWind loc10 (tests/assets/piwind_ord_loc10, oasislmf 2.5.8).
"""

from __future__ import annotations

import filecmp
import tarfile
from pathlib import Path

import pandas as pd

ASSETS = Path(__file__).resolve().parent / "assets" / "piwind_ord_loc10"


def storage_path(uri: str) -> Path:
    """The local path of a ``file://`` storage URI."""
    if not uri.startswith("file://"):
        raise ValueError(f"not a file:// URI: {uri}")
    return Path(uri[len("file://"):])


def extract(uri: str, target: Path) -> Path:
    """Extract the tarball at the ``file://`` URI ``uri`` into ``target``."""
    with tarfile.open(storage_path(uri)) as archive:
        archive.extractall(target, filter="data")
    return target


def assert_same_folder(a: Path, b: Path) -> None:
    """Same files (sub-folders included), byte for byte."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names and names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def assert_alt_matches_reference(output: Path) -> None:
    """GUL, IL and RI ALT of PiWind loc10 in ``output`` (any depth) equal oasislmf's within 1e-5."""
    for perspective in ("gul", "il", "ri"):
        ref = pd.read_csv(ASSETS / f"{perspective}_S1_palt.csv.gz")
        ours = pd.read_csv(next(output.rglob(f"{perspective}_S1_palt.csv")))
        assert ref.shape == ours.shape
        pd.testing.assert_frame_equal(ours[["SummaryId", "SampleType"]], ref[["SummaryId", "SampleType"]])
        assert (abs(ours["MeanLoss"] - ref["MeanLoss"]) <= 1e-5 * ref["MeanLoss"].abs() + 1e-3).all(), perspective
