"""perilflow.compare on two PiWind loc10 outputs: the reference engine's, and the kernel's with a deductible.

The second output is made here with ``perilflow run`` (the kernel) on PiWind loc10 with
``LocDed1Building = 20000`` on every location; it takes about two minutes and is kept in
``.cache/compare/<hash of the kernel and the inputs>/`` so later runs reuse it. Every
difference the comparison reports is checked against the two ALT/EPT files read with pandas.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow.compare import compare, merge_outputs, to_csv, to_html, to_json
from tests.conftest import REPO_ROOT, require_shared

BASELINE = REPO_ROOT / "tests" / "assets" / "piwind_ord_loc10"
DEDUCTIBLE = 20_000
RETURN_PERIODS = (10, 50, 100, 250, 500, 120)  # 120 lies between two points of the EPT: interpolated


def deductible_output() -> Path:
    """ORD outputs of PiWind loc10 with a building deductible, run by the kernel (cached; see the module docstring)."""
    piwind = require_shared("piwind")
    config = json.loads((piwind / "oasislmf_loc10.json").read_text())
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode() + str(DEDUCTIBLE).encode())
    for path in sorted((REPO_ROOT / "kernel").rglob("*.py")):
        digest.update(path.read_bytes())
    for name in ("oed_location_csv", "oed_accounts_csv", "analysis_settings_json"):
        digest.update((piwind / config[name]).read_bytes())
    cached = REPO_ROOT / ".cache" / "compare" / digest.hexdigest()[:16]
    if (cached / "output" / "il_S1_palt.csv").exists():
        return cached / "output"
    cached.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="piwind-ded-", dir=cached.parent))
    try:
        location = pd.read_csv(piwind / config["oed_location_csv"])
        location["LocDed1Building"] = DEDUCTIBLE
        location.to_csv(work / "location.csv", index=False)
        config = {k: (str(piwind / v) if isinstance(v, str) and "/" in v else v) for k, v in config.items()}
        config["oed_location_csv"] = str(work / "location.csv")
        (work / "oasislmf.json").write_text(json.dumps(config))
        subprocess.run([str(Path(sys.executable).with_name("perilflow")), "run", "--config",
                        str(work / "oasislmf.json"), "--output-dir", str(work / "run"), "--workers", "1"],
                       check=True, capture_output=True, env=os.environ.copy())
        (work / "run" / "output").rename(work / "output")
        shutil.rmtree(work / "run")
        try:
            work.rename(cached)
        except OSError:  # another worker got there first
            shutil.rmtree(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return cached / "output"


@pytest.fixture(scope="session")
def outputs() -> tuple[Path, Path]:
    return BASELINE, deductible_output()


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = folder / f"{name}.csv"
    return pd.read_csv(path if path.exists() else folder / f"{name}.csv.gz")


def expected_aal(folder: Path, perspective: str, sample_type: int) -> float:
    alt = _read(folder, f"{perspective}_S1_palt")
    return float(alt.loc[alt["SampleType"] == sample_type, "MeanLoss"].sum())


def expected_ep(folder: Path, perspective: str, ep_type: int, rp: float) -> float:
    ept = _read(folder, f"{perspective}_S1_ept")
    curve = ept[(ept["EPCalc"] == 2) & (ept["EPType"] == ep_type)].sort_values("ReturnPeriod")
    exact = curve[curve["ReturnPeriod"] == rp]
    if len(exact):
        return float(exact["Loss"].iloc[0])
    return float(np.interp(rp, curve["ReturnPeriod"], curve["Loss"]))


pytestmark = [pytest.mark.reference, pytest.mark.slow]


def test_differences_equal_those_from_the_files(outputs) -> None:
    base, ded = outputs
    result = compare([base, ded], ["reference", "deductible"], RETURN_PERIODS)
    rows = {(r.perspective, r.metric, r.sample_type, r.return_period): r for r in result.rows}
    assert {r.perspective for r in result.rows} == {"gul", "il", "ri"}
    checked = 0
    for perspective in ("gul", "il", "ri"):
        for sample_type in (1, 2):
            row = rows[(perspective, "AAL", sample_type, None)]
            a, b = expected_aal(base, perspective, sample_type), expected_aal(ded, perspective, sample_type)
            assert row.values == pytest.approx((a, b), rel=1e-12)
            assert row.differences[1] == pytest.approx(b - a, rel=1e-9, abs=1e-6)
            assert row.relative_differences[1] == pytest.approx((b - a) / a, rel=1e-9, abs=1e-12)
            checked += 1
        for metric, ep_type in (("OEP", 1), ("AEP", 3)):
            for rp in RETURN_PERIODS:
                row = rows[(perspective, metric, None, float(rp))]
                a, b = expected_ep(base, perspective, ep_type, rp), expected_ep(ded, perspective, ep_type, rp)
                assert row.summary_id == 1 and row.values == pytest.approx((a, b), rel=1e-12)
                assert row.differences == pytest.approx((0.0, b - a), abs=1e-6)
                checked += 1
    assert checked == 3 * (2 + 2 * len(RETURN_PERIODS))
    # the deductible lowers insured losses, and leaves ground-up losses as they were
    il = rows[("il", "AAL", 2, None)]
    assert il.differences[1] < 0
    assert rows[("gul", "AAL", 2, None)].differences[1] == pytest.approx(0, abs=1e-6)


def test_json_csv_and_html(outputs) -> None:
    base, ded = outputs
    result = compare([base, ded, ded], ["ref", "ded", "ded again"], (100, 250))
    body = to_json(result)
    assert body["baseline"] == "ref" and body["return_periods"] == [100.0, 250.0] and body["ep_calc"] == [2, 2, 2]
    aal = next(r for r in body["rows"] if r["perspective"] == "il" and r["metric"] == "AAL" and r["sample_type"] == 2)
    assert aal["differences"][0] == 0 and aal["differences"][1] == aal["differences"][2] < 0
    json.dumps(body)  # plain JSON
    lines = to_csv(result).splitlines()
    assert lines[0] == ("perspective,summary_set,metric,sample_type,summary_id,return_period,analysis,value,"
                        "difference,relative_difference")
    assert len(lines) == 1 + 3 * len(result.rows)
    il = [line.split(",") for line in lines if line.startswith("il,1,AAL,2,")]
    assert [cells[6] for cells in il] == ["ref", "ded", "ded again"]
    assert float(il[1][8]) == pytest.approx(aal["differences"][1])
    page = to_html(result)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3 and "<script" not in page
    assert page.count('class="curve"') == 3 * 3 * 2  # perspectives x analyses x (OEP, AEP)


def test_bad_input_is_refused(outputs, tmp_path) -> None:
    base, _ = outputs
    with pytest.raises(ValueError, match="two or more"):
        compare([base])
    with pytest.raises(ValueError, match="positive"):
        compare([base, base], return_periods=[0])
    with pytest.raises(FileNotFoundError, match="no ORD"):
        compare([base, tmp_path])


def test_merge_outputs_renumbers_summary_sets(outputs, tmp_path) -> None:
    base, ded = outputs
    mapping = merge_outputs([base, ded], tmp_path / "merged")
    names = sorted(p.name for p in (tmp_path / "merged").iterdir())
    assert "il_S1_palt.csv.gz" in names and "il_S2_palt.csv" in names and "combine_map.csv" in names
    assert {"perspective": "il", "summary_set": 2, "analysis_index": 1, "source_summary_set": 1} in mapping
    merged = compare([tmp_path / "merged", base], ["merged", "base"], (100,))
    sets = {(r.perspective, r.summary_set) for r in merged.rows}
    assert sets == {(p, s) for p in ("gul", "il", "ri") for s in (1, 2)}
