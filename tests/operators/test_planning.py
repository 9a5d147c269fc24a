"""Run conf checks, chunking as OasisPlatform, the per-step plan, the priority policy and batch schedules."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from perilflow.operators.batch import ScheduleError, due_runs, fire_times
from perilflow.operators.chunking import ChunkingError, ChunkingOptions, count_events
from perilflow.operators.config import PlatformConfig
from perilflow.operators.plan import input_generation_plan, losses_generation_plan
from perilflow.operators.policy import task_instance_mutation_hook
from perilflow.operators.runconf import parse_conf
from tests.operators.conftest import piwind_model

CONF = {"analysis_id": 3, "model": piwind_model(), "portfolio": {"location": "/data/loc.csv"},
        "analysis_settings": {"number_of_samples": 10}}


# -- chunking (OasisPlatform's ModelChunkingOptions) ------------------------------------------------

@pytest.mark.parametrize(("options", "locations", "expected"), [
    ({}, 10, 1),
    ({"fixed_lookup_chunks": 4}, 10, 4),
    ({"fixed_lookup_chunks": 40}, 10, 10),          # never more chunks than locations
    ({"lookup_strategy": "DYNAMIC_CHUNKS", "dynamic_locations_per_lookup": 3}, 10, 4),
    ({"lookup_strategy": "DYNAMIC_CHUNKS", "dynamic_locations_per_lookup": 1}, 1000, 200),   # capped
    ({"lookup_strategy": "DYNAMIC_CHUNKS", "dynamic_locations_per_lookup": 1, "dynamic_chunks_max": 500}, 1000, 500),
    ({}, 0, 1),
])
def test_lookup_chunks(options, locations, expected) -> None:
    assert ChunkingOptions.from_dicts(options).lookup_chunks(locations) == expected


@pytest.mark.parametrize(("options", "events", "expected"), [
    ({"fixed_analysis_chunks": 8}, 1000, 8),
    ({"fixed_analysis_chunks": 8}, None, 8),
    ({"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 100}, 1050, 11),
    ({"loss_strategy": "DYNAMIC_CHUNKS", "dynamic_events_per_analysis": 1}, 100_000, 200),
])
def test_loss_chunks(options, events, expected) -> None:
    assert ChunkingOptions.from_dicts(options).loss_chunks(events) == expected


def test_analysis_override_wins_over_the_model() -> None:
    options = ChunkingOptions.from_dicts({"fixed_analysis_chunks": 4, "dynamic_chunks_max": 10},
                                         {"fixed_analysis_chunks": 16})
    assert options.loss_chunks(1000) == 10


@pytest.mark.parametrize(("options", "message"), [
    ({"fixed_lookup_chunks": 0}, "fixed_lookup_chunks is 0; it must be a positive integer"),
    ({"loss_strategy": "SOMETIMES"}, "loss_strategy is 'SOMETIMES'; use one of"),
    ({"chunks": 3}, "chunking option 'chunks' is unknown"),
    ({"dynamic_chunks_max": "7"}, "dynamic_chunks_max is '7'"),
])
def test_bad_chunking_options_are_named(options, message) -> None:
    with pytest.raises(ChunkingError, match=message):
        ChunkingOptions.from_dicts(options)


def test_dynamic_loss_chunks_need_the_event_count() -> None:
    with pytest.raises(ChunkingError, match="number_of_events"):
        ChunkingOptions.from_dicts({"loss_strategy": "DYNAMIC_CHUNKS"}).loss_chunks(None)


def test_event_count_as_oasisplatform_counts_it() -> None:
    model = {"model_settings": {"event_set": {"default": "p", "options": [
        {"id": "p", "number_of_events": 1200}, {"id": "h", "number_of_events": 30}]}}}
    assert count_events({"event_ids": [1, 2, 3]}, model) == 3
    assert count_events({"model_settings": {"event_set": "h"}}, model) == 30
    assert count_events({}, model) == 1200
    assert count_events({}, None) is None


# -- run conf ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"analysis_id": 0}, "analysis_id is 0"),
    ({"analysis_id": None}, "'analysis_id' is missing"),
    ({"model": {"id": "x"}}, "model.model_data_dir is missing"),
    ({"portfolio": {}}, "'portfolio' is missing"),
    ({"run_mode": "v3"}, "run_mode is 'v3'"),
    ({"priority": 11}, "priority is 11; give an integer from 1 to 10"),
    ({"run_uuid": "../../etc"}, "run_uuid"),
    ({"chunking": {"fixed_analysis_chunks": -1}}, "fixed_analysis_chunks is -1"),
])
def test_bad_conf_is_refused_with_the_field_named(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_conf({**CONF, **change}, "both")


def test_losses_only_runs_need_an_input_file() -> None:
    with pytest.raises(ValueError, match="input_file"):
        parse_conf({k: v for k, v in CONF.items() if k != "portfolio"}, "losses")
    conf = parse_conf({**CONF, "input_file": "s3://b/in.tar.gz"}, "losses")
    assert conf.input_file == "s3://b/in.tar.gz" and conf.run_mode == "v2" and conf.priority == 4


@pytest.mark.parametrize(("conf", "message"), [
    ({"analysis_id": 0}, "analysis_id"),
    ({"priority": 11}, "priority"),
    ({"run_mode": "fast"}, "run_mode"),
    ({"model": {"id": "m"}}, "model"),
    ({"chunking": {"fixed_analysis_chunks": 0}}, "chunking"),
])
def test_the_dag_params_refuse_a_bad_trigger_conf(conf, message, airflow_db) -> None:
    """What `airflow dags trigger --conf` and the REST API check before a run is created."""
    from airflow.sdk.exceptions import ParamValidationError

    from perilflow.operators.workflows import generate_and_run_dag

    params = generate_and_run_dag().params
    with pytest.raises(ParamValidationError, match=message):
        params.update({**CONF, **conf})
        params.validate()


def test_a_good_conf_passes_the_dag_params(airflow_db) -> None:
    from perilflow.operators.workflows import generate_and_run_dag

    params = generate_and_run_dag().params
    params.update(CONF)
    assert params.validate()["analysis_id"] == 3


# -- plan -------------------------------------------------------------------------------------------

def _cfg(monkeypatch, url="s3://bucket/perilflow") -> PlatformConfig:
    monkeypatch.setenv("PERILFLOW_STORAGE_URL", url)
    return PlatformConfig.from_env()


def test_input_generation_plan_names_storage_as_oasisplatform(monkeypatch) -> None:
    conf = parse_conf({**CONF, "chunking": {"fixed_lookup_chunks": 3}}, "inputs")
    plan = input_generation_plan(conf, _cfg(monkeypatch), "0123456789abcdef", locations=10)
    folder = "s3://bucket/perilflow/analysis-3_files-0123456789abcdef"
    assert plan["folder"] == folder and plan["n_lookup_chunks"] == 3
    assert [p["output"] for p in plan["lookups"]] == [f"{folder}/lookup-{i}.tar.gz" for i in range(3)]
    assert [(p["chunk_index"], p["n_chunks"]) for p in plan["lookups"]] == [(0, 3), (1, 3), (2, 3)]
    assert plan["collect"]["lookups"] == [p["output"] for p in plan["lookups"]]
    assert plan["write"]["output"] == f"{folder}/input.tar.gz"
    assert plan["cleanup"]["temporary"] == ["exposure", "lookup-0.tar.gz", "lookup-1.tar.gz", "lookup-2.tar.gz"]
    assert all(p["_runtime"]["analysis_id"] == 3 for p in (plan["hook"], *plan["lookups"], plan["write"]))


def test_losses_plan_v1_and_v2(monkeypatch) -> None:
    cfg = _cfg(monkeypatch)
    v2 = losses_generation_plan(parse_conf({**CONF, "chunking": {"fixed_analysis_chunks": 8}}, "both"), cfg,
                                "feedbeef", "s3://bucket/in.tar.gz", events=100)
    assert v2["n_loss_chunks"] == 8 and len(v2["chunks"]) == 8 and v2["v1"] is None
    assert v2["merge"]["works"] == [c["output"] for c in v2["chunks"]]
    assert v2["prepare"]["analysis_settings"] == "s3://bucket/perilflow/analysis-3_losses-feedbeef/analysis_settings.json"
    v1 = losses_generation_plan(parse_conf({**CONF, "run_mode": "v1"}, "both"), cfg, "feedbeef",
                                "s3://bucket/in.tar.gz", events=100)
    assert v1["chunks"] == [] and v1["prepare"] is None and v1["merge"] is None
    assert v1["v1"]["output"] == v1["record"]["output_file"]


def test_storage_names_are_sanitised(monkeypatch) -> None:
    from perilflow.operators.storage import folder_uri, safe_name

    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert folder_uri(_cfg(monkeypatch), 5, "losses", "a/../b") == "s3://bucket/perilflow/analysis-5_losses-a-..-b"


# -- priority and pool policy ----------------------------------------------------------------------

@pytest.mark.parametrize(("dag_id", "task_id", "conf", "weight", "pool"), [
    ("perilflow_losses_generation", "generate-losses-chunk", {"priority": 8, "model": {"pool": "piwind"}}, 8,
     "piwind"),
    ("perilflow_losses_generation", "prepare-losses-generation-params", {"priority": 8, "model": {"pool": "p"}}, 8,
     "default_pool"),
    ("perilflow_input_generation", "prepare-keys-file", {"priority": 2}, 2, "default_pool"),
    ("other_dag", "generate-losses-chunk", {"priority": 8}, 1, "default_pool"),
    ("perilflow_losses_generation", "generate-losses-chunk", {"priority": "high"}, 1, "default_pool"),
])
def test_run_priority_and_model_pool_reach_every_task(dag_id, task_id, conf, weight, pool) -> None:
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, priority_weight=1, pool="default_pool")
    task_instance_mutation_hook(task_instance=ti, dag_run=SimpleNamespace(conf=conf))
    assert (ti.priority_weight, ti.pool) == (weight, pool)
    task_instance_mutation_hook(task_instance=ti, dag_run=None)  # early construction: untouched


def test_the_policy_is_registered_for_airflow() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="airflow.policy")}
    assert "perilflow.operators.policy" in names


# -- batch schedules --------------------------------------------------------------------------------

def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_fire_times_in_an_interval() -> None:
    assert fire_times("0 2 * * *", _utc(2026, 11, 22, 2, 0), _utc(2026, 11, 22, 2, 15)) == [_utc(2026, 11, 22, 2)]
    assert fire_times("0 2 * * *", _utc(2026, 11, 22, 1, 45), _utc(2026, 11, 22, 2, 0)) == []
    assert len(fire_times("*/5 * * * *", _utc(2026, 1, 1), _utc(2026, 1, 1, 0, 15))) == 3


def test_due_runs_have_stable_ids_and_validate_entries() -> None:
    schedules = [{"name": "nightly-42", "cron": "0 2 * * *", "conf": {"analysis_id": 42}},
                 {"name": "hourly-7", "cron": "0 * * * *", "dag_id": "perilflow_losses_generation",
                  "conf": {"analysis_id": 7}}]
    runs = due_runs(schedules, _utc(2026, 11, 22, 2), _utc(2026, 11, 22, 2, 15))
    assert [r["trigger_run_id"] for r in runs] == ["scheduled__nightly-42__2026-11-22T02:00:00",
                                                    "scheduled__hourly-7__2026-11-22T02:00:00"]
    assert runs[0]["trigger_dag_id"] == "perilflow_generate_and_run"
    with pytest.raises(ScheduleError, match=r"perilflow_schedules\[0\].cron 'every day'"):
        due_runs([{"name": "x", "cron": "every day", "conf": {}}], _utc(2026, 1, 1), _utc(2026, 1, 2))
    with pytest.raises(ScheduleError, match="name '../x'"):
        due_runs([{"name": "../x", "cron": "0 2 * * *", "conf": {}}], _utc(2026, 1, 1), _utc(2026, 1, 2))


def test_the_batch_dag_triggers_each_due_analysis_once(airflow_db, tmp_path) -> None:
    import json

    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from perilflow.operators.batch import batch_dag

    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"perilflow_schedules": json.dumps([
        {"name": "nightly-42", "cron": "0 2 * * *", "conf": {**CONF, "analysis_id": 42}},
        {"name": "monthly-9", "cron": "0 3 1 * *", "conf": {**CONF, "analysis_id": 9}}])}))
    for _ in range(2):  # the same interval twice: no second run
        dr = batch_dag().test(logical_date=_utc(2026, 11, 22, 2, 15), variable_file_path=str(variables))
        assert dr.state == "success"
    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "perilflow_generate_and_run",
                                            DagRun.run_id.like("scheduled__%")).all()
        assert [(r.run_id, r.conf["analysis_id"]) for r in runs] == [("scheduled__nightly-42__2026-11-22T02:00:00",
                                                                      42)]
