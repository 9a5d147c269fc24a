"""AirflowGateway.trigger: the submission time, to the microsecond, is the run's logical date, so the
scheduler (which breaks priority ties by logical date) starts equal priorities first come, first served.
The scheduler side is tested in tests/integration/test_load.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from perilflow.plugins.api.gateway import TRIGGER_TRIES, AirflowGateway, WorkflowError


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """Airflow's trigger_dag replaced: records its arguments; a logical date already taken raises the
    IntegrityError of the (dag_id, logical_date) unique key, as the metadata DB does."""
    from airflow.api.common import trigger_dag as module
    from sqlalchemy.exc import IntegrityError

    seen: list[dict] = []
    taken: set[tuple[str, datetime]] = set()

    def trigger_dag(dag_id, **kwargs):
        seen.append({"dag_id": dag_id, **kwargs})
        key = (dag_id, kwargs["logical_date"])
        if key in taken:
            raise IntegrityError("INSERT INTO dag_run", {}, Exception("dag_run_dag_id_logical_date_key"))
        taken.add(key)

    monkeypatch.setattr(module, "trigger_dag", trigger_dag)
    return seen


def test_the_logical_date_is_the_submission_time_with_microseconds(calls) -> None:
    before = datetime.now().astimezone()
    AirflowGateway().trigger("perilflow_losses_generation", "r1", {"analysis_id": 1}, "alice")
    call = calls[-1]
    assert call["replace_microseconds"] is False and call["run_id"] == "r1" and call["triggering_user_name"] == "alice"
    assert before <= call["logical_date"] <= datetime.now().astimezone() + timedelta(seconds=1)
    assert call["logical_date"].tzinfo is not None


def test_a_taken_logical_date_moves_on_by_a_microsecond(calls, monkeypatch) -> None:
    fixed = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
    monkeypatch.setattr("perilflow.plugins.api.gateway.submission_time", lambda: fixed)
    gateway = AirflowGateway()
    gateway.trigger("d", "r1", {}, "alice")
    gateway.trigger("d", "r2", {}, "alice")
    gateway.trigger("other", "r3", {}, "alice")  # unique per DAG only
    assert [(c["run_id"], c["logical_date"] - fixed) for c in calls] == [
        ("r1", timedelta(0)), ("r2", timedelta(0)), ("r2", timedelta(microseconds=1)), ("r3", timedelta(0))]
    for n in range(TRIGGER_TRIES - 2):
        gateway.trigger("d", f"x{n}", {}, "alice")
    with pytest.raises(WorkflowError, match="dag_run_dag_id_logical_date_key"):
        gateway.trigger("d", "last", {}, "alice")
