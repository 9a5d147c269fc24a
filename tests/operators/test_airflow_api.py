"""The REST client tasks and the API use to reach Airflow: 5xx answers are retried, 4xx are not."""

from __future__ import annotations

import httpx
import pytest

from perilflow.operators.airflow_api import AirflowApi, AirflowApiError


def api_answering(statuses: list[int]) -> tuple[AirflowApi, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        seen.append(f"{request.method} {request.url.path}")
        code = statuses.pop(0)
        return httpx.Response(code, json={"detail": "Database error"} if code >= 400 else {"ok": True})

    api = AirflowApi("http://airflow.test", "admin", "pw")
    api.client = httpx.Client(transport=httpx.MockTransport(handler))
    return api, seen


def test_a_busy_database_answer_is_retried(monkeypatch) -> None:
    monkeypatch.setattr("perilflow.operators.airflow_api.time.sleep", lambda s: None)
    api, seen = api_answering([500, 503, 200])
    api.set_task_state("d", "r", "t", 2, "skipped")
    assert seen == ["PATCH /api/v2/dags/d/dagRuns/r/taskInstances/t/2"] * 3


def test_retries_are_bounded_and_the_error_names_the_call(monkeypatch) -> None:
    monkeypatch.setattr("perilflow.operators.airflow_api.time.sleep", lambda s: None)
    api, seen = api_answering([500] * 10)
    with pytest.raises(AirflowApiError, match="PATCH /dags/d/dagRuns/r: 500"):
        api.set_run_state("d", "r", "failed")
    assert len(seen) == 4


def test_a_client_error_is_not_retried() -> None:
    api, seen = api_answering([404, 200])
    with pytest.raises(AirflowApiError, match="404"):
        api.call("GET", "/dags/nope")
    assert len(seen) == 1


def test_a_task_already_in_the_wanted_state_is_not_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        return httpx.Response(409, json={"detail": "Task id t is already in skipped state"})

    api = AirflowApi("http://airflow.test", "admin", "pw")
    api.client = httpx.Client(transport=httpx.MockTransport(handler))
    api.set_task_state("d", "r", "t", -1, "skipped")  # the scheduler skipped it first: fine
    with pytest.raises(AirflowApiError, match="409"):
        api.set_task_state("d", "r", "t", -1, "failed")  # another conflict is still an error
