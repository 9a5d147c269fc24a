"""``POST /v2/analyses/compare/`` and ``/combine/`` on two completed PiWind loc10 analyses (reference vs deductible)."""
# ruff: noqa: F811 - the fixtures of test_analyses are imported by name and used as arguments

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest

from perilflow.plugins.api.gateway import RunInfo
from perilflow.plugins.settings import ApiSettings
from tests.plugins.conftest import auth
from tests.plugins.test_analyses import _analysis, _post, analysis_settings, piwind, setup  # noqa: F401 - fixtures
from tests.test_compare import BASELINE, deductible_output, expected_aal, expected_ep

pytestmark = [pytest.mark.reference, pytest.mark.slow]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> ApiSettings:
    """As conftest's, with room for PiWind's ORD outputs (the tar routes refuse archives past the upload limit)."""
    return ApiSettings(database_url=db_url, storage_url=f"file://{tmp_path / 'storage'}", max_upload_mb=64,
                       airflow_url="http://127.0.0.1:9")


def _completed(client, setup, gateway, settings, analysis_settings, folder: Path, name: str) -> int:
    """An analysis whose generate_and_run succeeded, its output tarball holding ``folder``'s files in output/."""
    aid = _analysis(client, setup, name=name)["id"]
    client.post(f"/v2/analyses/{aid}/settings/", json=analysis_settings, headers=auth("alice"))
    assert _post(client, aid, "generate_and_run").status_code == 200
    dag_id, run_id, conf, _ = gateway.triggered[-1]
    root = Path(settings.storage_url.removeprefix("file://"))
    output = root / f"analysis-{aid}_losses-{conf['run_uuid']}" / "output.tar.gz"
    output.parent.mkdir(parents=True)
    with tarfile.open(output, "w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=f"output/{path.name}")
    gateway.runs[(dag_id, run_id)] = RunInfo("success")
    gateway.xcoms[(dag_id, run_id, "record-losses-files")] = {"output_file": f"file://{output}"}
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_COMPLETED"
    return aid


@pytest.fixture
def two(client, setup, gateway, settings, analysis_settings) -> tuple[int, int, Path]:
    ded = deductible_output()
    a = _completed(client, setup, gateway, settings, analysis_settings, BASELINE, "reference")
    b = _completed(client, setup, gateway, settings, analysis_settings, ded, "deductible")
    return a, b, ded


def test_compare_json(client, two) -> None:
    a, b, ded = two
    reply = client.post("/v2/analyses/compare/", json={"analyses": [a, b], "return_periods": [100, 250]},
                        headers=auth("alice"))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [x["id"] for x in body["analyses"]] == [a, b] and body["baseline"] == f"{a}: reference"
    rows = {(r["perspective"], r["metric"], r["sample_type"], r["return_period"]): r for r in body["rows"]}
    for perspective in ("gul", "il", "ri"):
        aal = rows[(perspective, "AAL", 2, None)]
        base, new = expected_aal(BASELINE, perspective, 2), expected_aal(ded, perspective, 2)
        assert aal["values"] == pytest.approx([base, new]) and aal["differences"][1] == pytest.approx(new - base)
        for metric, ep_type in (("OEP", 1), ("AEP", 3)):
            row = rows[(perspective, metric, None, 250.0)]
            base, new = expected_ep(BASELINE, perspective, ep_type, 250), expected_ep(ded, perspective, ep_type, 250)
            assert row["differences"][1] == pytest.approx(new - base, abs=1e-6)
            if base:
                assert row["relative_differences"][1] == pytest.approx((new - base) / base)


def test_compare_csv_and_html(client, two) -> None:
    a, b, _ = two
    got = client.post("/v2/analyses/compare/?format=csv", json={"analyses": [b, a]}, headers=auth("alice"))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(got.text)))
    il = [r for r in table if r["perspective"] == "il" and r["metric"] == "AAL" and r["sample_type"] == "2"]
    assert [r["analysis"] for r in il] == [f"{b}: deductible", f"{a}: reference"] and float(il[1]["difference"]) > 0
    page = client.post("/v2/analyses/compare/?format=html", json={"analyses": [a, b]}, headers=auth("alice"))
    assert page.headers["content-type"].startswith("text/html") and page.text.count("<svg") == 3


def test_compare_refuses_bad_requests(client, setup, two) -> None:
    a, b, _ = two
    new = _analysis(client, setup, name="not run")["id"]
    reply = client.post("/v2/analyses/compare/", json={"analyses": [a, new]}, headers=auth("alice"))
    assert reply.status_code == 400 and f"analysis {new} is NEW" in reply.json()["analyses"][0]
    assert client.post("/v2/analyses/compare/", json={"analyses": [a]}, headers=auth("alice")).status_code == 422
    reply = client.post("/v2/analyses/compare/", json={"analyses": [a, 999]}, headers=auth("alice"))
    assert reply.json() == {"analyses": ["analysis 999 not found"]}
    assert client.post("/v2/analyses/compare/", json={"analyses": [a, a]}, headers=auth("alice")).status_code == 400
    assert client.post("/v2/analyses/compare/?format=pdf", json={"analyses": [a, b]},
                       headers=auth("alice")).status_code == 422
    assert client.post("/v2/analyses/compare/", json={"analyses": [a, b]}).status_code == 401


def test_combine(client, two) -> None:
    a, b, _ = two
    assert client.post("/v2/analyses/combine/", json={"analysis_ids": [a, b]},
                       headers=auth("alice")).status_code == 422  # config is required, as the reference
    refused = client.post("/v2/analyses/combine/", json={"analysis_ids": [a, b], "config": {"group_period": 1}},
                          headers=auth("alice"))
    assert refused.status_code == 400 and "config" in refused.json()
    reply = client.post("/v2/analyses/combine/", json={"analysis_ids": [a, b], "config": {}, "name": "both"},
                        headers=auth("alice"))
    assert reply.status_code == 201, reply.text
    combined = reply.json()
    assert combined["status"] == "RUN_COMPLETED" and combined["name"] == "both"
    names = client.get(f"/v2/analyses/{combined['id']}/output_file_tar_list/", headers=auth("alice")).json()
    assert "output/il_S1_palt.csv.gz" in names and "output/il_S2_palt.csv" in names
    assert "output/combine_map.csv" in names
    # the combined analysis compares like any other: its set 2 is the deductible run's set 1
    body = client.post("/v2/analyses/compare/", json={"analyses": [combined["id"], b]},
                       headers=auth("alice")).json()
    set2 = next(r for r in body["rows"] if r["perspective"] == "il" and r["summary_set"] == 2 and r["metric"] == "AAL")
    set1_b = next(r for r in body["rows"] if r["perspective"] == "il" and r["summary_set"] == 1
                  and r["metric"] == "AAL" and r["sample_type"] == set2["sample_type"])
    assert set2["values"][0] == pytest.approx(set1_b["values"][1])
