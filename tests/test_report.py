"""perilflow.report against the PiWind loc10 reference outputs (values recomputed here with pandas)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perilflow import report
from perilflow.report import AEP, OEP, read_results, results_rows, results_table

ASSET = Path(__file__).parent / "assets" / "piwind_ord_loc10"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def results() -> report.Results:
    return read_results(ASSET)


def _ept(perspective: str) -> pd.DataFrame:
    return pd.read_csv(ASSET / f"{perspective}_S1_ept.csv.gz")


def test_aal_is_the_palt_sum_per_sample_type(results):
    for p in ("gul", "il", "ri"):
        palt = pd.read_csv(ASSET / f"{p}_S1_palt.csv.gz")
        s = results.sets[(p, 1)]
        assert s.aal_analytical == pytest.approx(palt.loc[palt.SampleType == 1, "MeanLoss"].sum(), rel=1e-12)
        assert s.aal_sampled == pytest.approx(palt.loc[palt.SampleType == 2, "MeanLoss"].sum(), rel=1e-12)
    assert results.perspectives() == ("gul", "il", "ri")


def test_curves_are_full_uncertainty_oep_and_aep(results):
    for p in ("gul", "il", "ri"):
        ept = _ept(p)
        s = results.sets[(p, 1)]
        assert s.ep_calc == 2 and s.is_portfolio
        for ep_type in (OEP, AEP):
            rows = ept[(ept.EPCalc == 2) & (ept.EPType == ep_type)].sort_values("ReturnPeriod")
            curve = results.curve(p, ep_type)
            np.testing.assert_allclose(curve.return_periods, rows.ReturnPeriod.to_numpy())
            np.testing.assert_allclose(curve.losses, rows.Loss.to_numpy())


def test_table_rows_interpolate_linearly_and_say_na_outside(results):
    rps = (10, 40, 100, 6000)
    rows = {r.label: r.values for r in results_rows(results, rps)}
    ept = _ept("il")
    oep = ept[(ept.EPCalc == 2) & (ept.EPType == 1)].set_index("ReturnPeriod")["Loss"]
    assert rows["OEP 10y"]["il"] == pytest.approx(oep[10.0])
    assert rows["OEP 100y"]["il"] == pytest.approx(oep[100.0])
    # 40 years lies between the file's 30 and 50 year points
    expected = oep[30.0] + (40 - 30) * (oep[50.0] - oep[30.0]) / (50 - 30)
    assert rows["OEP 40y"]["il"] == pytest.approx(expected)
    assert rows["AEP 6000y"] == {"gul": None, "il": None, "ri": None}
    assert rows["AAL"]["ri"] == results.sets[("ri", 1)].aal_sampled

    text = results_table(results, rps)
    lines = text.splitlines()
    assert lines[0].split() == ["GUL", "IL", "RI", "(net)"]
    aep_line = next(line for line in lines if line.startswith("AEP 6000y"))
    assert aep_line.split()[2:] == ["n/a", "n/a", "n/a"]
    oep100 = next(line for line in lines if line.startswith("OEP 100y"))
    assert oep100.split()[3] == f"{oep[100.0]:,.0f}"


def test_default_table_has_the_standard_rows(results):
    labels = [line.split("  ")[0].strip() for line in results_table(results).splitlines()[2:] if line]
    assert labels[:2] == ["AAL", "AAL (analytical)"]
    assert labels[2:14] == [f"{k} {rp}y" for k in ("OEP", "AEP") for rp in (10, 50, 100, 250, 500, 1000)]


def test_svg_parses_and_has_one_path_per_curve(results):
    svg = report.ep_chart_svg(results)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    paths = root.findall(f".//{SVG}path")
    assert len(paths) == 6
    assert {(p.get("data-perspective"), p.get("data-ep")) for p in paths} == {
        (p, e) for p in ("gul", "il", "ri") for e in ("OEP", "AEP")}
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "GUL OEP" in texts and "RI (net) AEP" in texts and "10" in texts and "1000" in texts
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing external
    # the highest GUL AEP point (5000 years) is the right-most, highest point of its path
    gul_aep = next(p for p in paths if p.get("data-perspective") == "gul" and p.get("data-ep") == "AEP")
    pts = [tuple(map(float, c[1:].split(","))) for c in gul_aep.get("d").split()]
    assert pts[-1][0] == max(x for x, _ in pts) and pts[-1][1] == min(y for _, y in pts)


def test_html_report_is_self_contained_and_written_atomically(results, tmp_path, monkeypatch):
    target = tmp_path / "reports" / "loc10.html"
    path = report.write_html_report(results, target, title="PiWind <loc10>")
    text = path.read_text(encoding="utf-8")
    assert path == target and "<title>PiWind &lt;loc10&gt;</title>" in text
    assert text.count("<svg") == 1 and "<script" not in text and "src=" not in text
    assert "232,123" in text  # GUL AAL (sampled)

    # a failing write leaves the old report in place and no temporary file behind
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "html_report", broken)
    with pytest.raises(RuntimeError):
        report.write_html_report(results, target)
    assert target.read_text(encoding="utf-8") == text
    assert [p.name for p in target.parent.iterdir()] == ["loc10.html"]


def test_folder_shapes_and_portfolio_rules(tmp_path):
    # an extracted tarball (output/ folder), csv and parquet, two summary sets
    out = tmp_path / "run" / "output"
    out.mkdir(parents=True)
    shutil.copy(ASSET / "gul_S1_palt.csv.gz", out / "gul_S1_palt.csv.gz")
    _ept("gul").to_parquet(out / "gul_S1_ept.parquet")
    per_loc = pd.DataFrame({"SummaryId": [1, 1, 2, 2], "EPCalc": 2, "EPType": 1,
                            "ReturnPeriod": [10.0, 100.0, 10.0, 100.0], "Loss": [1.0, 5.0, 2.0, 7.0]})
    per_loc.to_csv(out / "gul_S2_ept.csv", index=False)
    pd.DataFrame({"SummaryId": [1, 1, 2, 2], "SampleType": [1, 2, 1, 2], "MeanLoss": [1.0, 2.0, 3.0, 4.0],
                  "SDLoss": 0.0}).to_csv(out / "gul_S2_palt.csv", index=False)

    settings = {"gul_summaries": [{"id": 1, "oed_fields": []}, {"id": 2, "oed_fields": ["LocNumber"]}]}
    r = read_results(tmp_path / "run", settings)
    assert r.output_dir == out
    s1, s2 = r.sets[("gul", 1)], r.sets[("gul", 2)]
    assert s1.is_portfolio and not s2.is_portfolio
    assert s2.oed_fields == ("LocNumber",) and s2.summary_ids == (1, 2)
    assert s2.aal_sampled == 6.0 and s2.portfolio_curve(OEP) is None
    assert s2.oep[2].loss_at(55) == pytest.approx(2.0 + 45 * 5.0 / 90)
    assert r.portfolio("gul") is s1 and r.curve("gul", OEP).losses[-1] == pytest.approx(3400000.25)
    assert r.perspectives() == ("gul",)

    # a summary-info file with one row makes a set portfolio level whatever the settings say
    pd.DataFrame({"summary_id": [1], "PortNumber": ["P1"], "tiv": [1.0]}).to_csv(
        out / "gul_S2_summary-info.csv", index=False)
    pd.DataFrame({"SummaryId": [1], "EPCalc": 1, "EPType": 3, "ReturnPeriod": [10.0], "Loss": [3.0]}).to_csv(
        out / "gul_S2_ept.csv", index=False)
    s2 = read_results(out, settings).sets[("gul", 2)]
    assert s2.is_portfolio and s2.oed_fields == ("PortNumber",) and s2.ep_calc == 1
    assert s2.portfolio_curve(AEP).losses == (3.0,)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ORD ALT/EPT files"):
        read_results(tmp_path)
    pd.DataFrame({"SummaryId": [1], "Loss": [1.0]}).to_csv(tmp_path / "il_S1_ept.csv", index=False)
    with pytest.raises(ValueError, match=r"il_S1_ept.csv: missing column\(s\) \['EPCalc', 'EPType', 'ReturnPeriod'\]"):
        read_results(tmp_path)
