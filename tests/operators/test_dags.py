"""The analysis DAGs run end to end with Airflow's own ``dag.test()`` on PiWind loc10.

Every model step runs as a real ``perilflow-worker`` process through the local backend;
files go through the shared storage folder. The outputs must not depend on the lookup or
loss chunk count nor on the run mode.
"""

from __future__ import annotations

import json
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from tests.operators.conftest import piwind_model
from tests.ord_checks import assert_alt_matches_reference, assert_same_folder, extract, storage_path

pytestmark = [pytest.mark.integration, pytest.mark.reference]


def run_dag(dag_factory, conf: dict):
    dr = dag_factory().test(run_conf=conf)
    tis = {(ti.task_id, ti.map_index): ti for ti in dr.get_task_instances()}
    return dr, tis


def xcom(tis, task_id: str, key: str = "return_value"):
    return tis[(task_id, -1)].xcom_pull(task_ids=task_id, key=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, airflow_db) -> dict:
    """generate_and_run with 1 and 4 chunks (lookup and losses), run_mode v1 and v2."""
    from _pytest.monkeypatch import MonkeyPatch

    from perilflow.operators.workflows import generate_and_run_dag
    from tests.conftest import require_shared

    piwind = require_shared("piwind")
    patch = MonkeyPatch()
    patch.setenv("PERILFLOW_MODEL_ROOT", str(piwind))
    exposure = piwind / "exposure_data"
    settings = json.loads((piwind / "analysis_settings/ord_all_outputs_s10.json").read_text())
    out = {}
    try:
        for n, mode in ((1, "v1"), (1, "v2"), (4, "v1"), (4, "v2")):
            conf = {"analysis_id": 10 + n, "model": piwind_model(), "run_mode": mode,
                    "portfolio": {"location": str(exposure / "SourceLocOEDPiWind10.csv"),
                                  "account": str(exposure / "SourceAccOEDPiWind.csv"),
                                  "ri_info": str(exposure / "SourceReinsInfoOEDPiWind.csv"),
                                  "ri_scope": str(exposure / "SourceReinsScopeOEDPiWind.csv")},
                    "analysis_settings": settings,
                    "chunking": {"fixed_lookup_chunks": n, "fixed_analysis_chunks": n}}
            dr, tis = run_dag(generate_and_run_dag, conf)
            record = xcom(tis, "record-losses-files")
            inputs = xcom(tis, "record-input-files")
            tmp = tmp_path_factory.mktemp(f"run-{n}-{mode}")
            out[(n, mode)] = {"dr": dr, "tis": tis, "record": record, "inputs": inputs,
                              "output": extract(record["output_file"], tmp / "output") if record else None,
                              "input": extract(inputs["input_file"], tmp / "input") if inputs else None}
    finally:
        patch.undo()
    return out


def test_every_run_succeeds_with_the_oasis_task_chain(runs) -> None:
    for (n, mode), run in runs.items():
        assert run["dr"].state == "success", (n, mode)
        states = {key: ti.state for key, ti in run["tis"].items()}
        lookups = [key for key in states if key[0] == "prepare-keys-file"]
        assert len(lookups) == n and all(states[k] == "success" for k in lookups)
        chunks = [key for key in states if key[0] == "generate-losses-chunk" and states[key] == "success"]
        if mode == "v2":
            assert len(chunks) == n
            assert states[("generate-losses", -1)] == "skipped"
        else:
            assert not chunks and states[("generate-losses", -1)] == "success"
            assert states[("prepare-losses-generation-directory", -1)] == "skipped"
        for task_id in ("cleanup-input-generation", "cleanup-losses-generation", "record-losses-files"):
            assert states[(task_id, -1)] == "success"


def test_mapped_chunks_have_readable_names(runs) -> None:
    tis = runs[(4, "v2")]["tis"]
    assert tis[("generate-losses-chunk", 2)].rendered_map_index == "chunk 3/4"
    assert tis[("prepare-keys-file", 0)].rendered_map_index == "lookup chunk 1/4"


def test_outputs_are_byte_identical_across_chunks_and_run_modes(runs) -> None:
    first = runs[(1, "v1")]
    for run in runs.values():
        assert_same_folder(first["output"], run["output"])
        assert_same_folder(first["input"], run["input"])


def test_storage_layout_and_cleanup(runs) -> None:
    run = runs[(4, "v2")]
    files = storage_path(run["inputs"]["folder"])
    losses = storage_path(run["record"]["folder"])
    assert files.name.startswith("analysis-14_files-") and losses.name.startswith("analysis-14_losses-")
    assert sorted(p.name for p in files.iterdir()) == ["exposure_summary_levels.json", "exposure_summary_report.json",
                                                       "input.tar.gz", "keys-errors.csv", "keys.csv", "logs",
                                                       "record.json"]
    # the lookup validation and summary levels files: recorded, parseable, also in the input tarball
    report = json.loads(storage_path(run["inputs"]["lookup_validation_file"]).read_text())
    assert report["total"]["portfolio"]["number_of_locations"] == 10 and {"WSS", "WTC"} <= set(report)
    levels = json.loads(storage_path(run["inputs"]["summary_levels_file"]).read_text())
    assert set(levels) == {"GUL", "IL", "RI"} and "LocNumber" in levels["GUL"]["available"]
    assert json.loads((run["input"] / "exposure_summary_report.json").read_text()) == report
    assert sorted(p.name for p in losses.iterdir()) == ["analysis_settings.json", "logs", "output.tar.gz",
                                                        "record.json"]
    logs = sorted(p.name for p in (losses / "logs").iterdir())
    assert logs == ["generate-losses-chunk-0-try1.log", "generate-losses-chunk-1-try1.log",
                    "generate-losses-chunk-2-try1.log", "generate-losses-chunk-3-try1.log",
                    "generate-losses-output-try1.log", "prepare-losses-generation-directory-try1.log"]
    assert '"output": ' in (losses / "logs" / "generate-losses-chunk-2-try1.log").read_text()
    record = json.loads((losses / "record.json").read_text())
    assert record["n_loss_chunks"] == 4 and record["run_mode"] == "v2"


def test_losses_match_the_reference_engine(runs) -> None:
    """The DAG's own input files and losses give oasislmf's ALT for PiWind loc10 (1e-5)."""
    assert_alt_matches_reference(runs[(4, "v2")]["output"])


def test_input_generation_and_losses_dags_give_the_same_outputs(runs, piwind_conf, tmp_path) -> None:
    from perilflow.operators.workflows import input_generation_dag, losses_generation_dag

    conf = {**piwind_conf, "analysis_id": 21, "chunking": {"fixed_lookup_chunks": 3}}
    dr, tis = run_dag(input_generation_dag, {k: v for k, v in conf.items() if k != "analysis_settings"})
    assert dr.state == "success"
    inputs = xcom(tis, "record-input-files")
    losses_conf = {k: v for k, v in conf.items() if k != "portfolio"}
    losses_conf.update(input_file=inputs["input_file"], chunking={"fixed_analysis_chunks": 3})
    dr, tis = run_dag(losses_generation_dag, losses_conf)
    assert dr.state == "success"
    output = extract(xcom(tis, "record-losses-files")["output_file"], tmp_path / "out")
    assert_same_folder(runs[(1, "v1")]["output"], output)


def flaky_worker(folder: Path, fails: int) -> Path:
    """A worker entry point that fails the first ``fails`` attempts of loss chunk 1, then runs the real one."""
    script = folder / "flaky-worker"
    real = Path(sys.executable).with_name("perilflow-worker")
    script.write_text(f"""#!{sys.executable}
import json, os, pathlib, sys
step, params = sys.argv[1], json.loads(sys.argv[3])
if step == "generate-losses-chunk" and params["chunk_index"] == 1:
    counter = pathlib.Path({str(folder)!r}) / "attempts"
    attempts = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(attempts + 1))
    if attempts < {fails}:
        print("simulated failure of chunk 1, attempt", attempts + 1, file=sys.stderr)
        sys.exit(1)
os.execv({str(real)!r}, [{str(real)!r}, *sys.argv[1:]])
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_chunk_that_fails_twice_is_retried_and_gives_the_same_outputs(runs, piwind_conf, tmp_path) -> None:
    from perilflow.operators.workflows import generate_and_run_dag

    conf = {**piwind_conf, "analysis_id": 31, "model": piwind_model(worker_command=[str(flaky_worker(tmp_path, 2))]),
            "chunking": {"fixed_analysis_chunks": 4}}
    dr, tis = run_dag(generate_and_run_dag, conf)
    assert dr.state == "success"
    assert (tmp_path / "attempts").read_text() == "3"
    assert tis[("generate-losses-chunk", 1)].try_number == 3
    output = extract(xcom(tis, "record-losses-files")["output_file"], tmp_path / "out")
    assert_same_folder(runs[(1, "v1")]["output"], output)


def test_a_chunk_that_always_fails_fails_the_run_and_leaves_a_traceback(piwind_conf, tmp_path, airflow_db) -> None:
    from perilflow.operators.workflows import generate_and_run_dag

    conf = {**piwind_conf, "analysis_id": 32, "model": piwind_model(worker_command=[str(flaky_worker(tmp_path, 99))]),
            "chunking": {"fixed_analysis_chunks": 2}}
    dr, tis = run_dag(generate_and_run_dag, conf)
    assert dr.state == "failed"
    assert tis[("generate-losses-chunk", 1)].state == "failed"
    assert tis[("generate-losses-chunk", 1)].try_number == 3
    assert tis[("generate-losses-output", -1)].state == "upstream_failed"
    assert tis[("record-losses-files", -1)].state == "upstream_failed"
    assert tis[("cleanup-losses-generation", -1)].state == "success"
    plan = tis[("prepare-losses-generation-params", -1)].xcom_pull(task_ids="prepare-losses-generation-params",
                                                                    key="cleanup")
    folder = storage_path(plan["folder"])
    traceback = (folder / "traceback.txt").read_text()
    assert "generate-losses-chunk-1" in traceback and "simulated failure of chunk 1" in traceback
    # a failed run keeps its temporary files for a resume (tasks.cleanup); it has no output
    assert (folder / "run_directory.tar.gz").exists() and not (folder / "output.tar.gz").exists()


def test_a_run_on_s3_storage_gives_the_same_outputs(runs, piwind_conf, moto_s3, monkeypatch, tmp_path) -> None:
    """Shared storage on S3 (a moto server on loopback) through an Airflow connection: same bytes out."""
    import boto3

    from perilflow.operators.workflows import generate_and_run_dag

    monkeypatch.setenv("PERILFLOW_STORAGE_URL", "s3://perilflow/runs")
    monkeypatch.setenv("PERILFLOW_STORAGE_CONN_ID", "perilflow_s3")
    monkeypatch.setenv("AIRFLOW_CONN_PERILFLOW_S3", json.dumps({
        "conn_type": "aws", "login": moto_s3["AWS_ACCESS_KEY_ID"], "password": moto_s3["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": moto_s3["AWS_ENDPOINT_URL"], "region_name": "us-east-1"}}))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)  # the worker must get them from the connection
    conf = {**piwind_conf, "analysis_id": 41, "chunking": {"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 2}}
    dr, tis = run_dag(generate_and_run_dag, conf)
    assert dr.state == "success"
    output_uri = xcom(tis, "record-losses-files")["output_file"]
    assert output_uri.startswith("s3://perilflow/runs/analysis-41_losses-")
    s3 = boto3.client("s3", endpoint_url=moto_s3["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="perilflow", Prefix="runs/")["Contents"])
    assert not [k for k in keys if k.endswith(".tmp") or "/work-" in k or "lookup-" in k], keys
    local = tmp_path / "output.tar.gz"
    s3.download_file("perilflow", output_uri[len("s3://perilflow/"):], str(local))
    with tarfile.open(local) as archive:
        archive.extractall(tmp_path / "out", filter="data")
    assert_same_folder(runs[(1, "v1")]["output"], tmp_path / "out")
