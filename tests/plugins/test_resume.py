"""POST /v2/analyses/{id}/resume/ (issue 8): clear only the failed part of a failed run; the gateway's call shape."""
# ruff: noqa: F811 - the fixtures of test_analyses are imported by name and used as arguments

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from perilflow.plugins.api.gateway import (
    AirflowGateway,
    RunInfo,
    TaskInstanceInfo,
    WorkflowError,
    clear_body,
    resume_targets,
)
from tests.plugins.conftest import auth
from tests.plugins.test_analyses import BOTH, _analysis, _post, analysis_settings, piwind, setup  # noqa: F401

NOW = datetime.now(UTC)


def _failed_inputs(client, gateway, setup, user: str = "alice") -> tuple[int, str, str]:
    """An analysis whose input generation failed in lookup chunk 1 of 3 (chunk 2 stopped, chunk 0 done)."""
    aid = _analysis(client, setup, user)["id"]
    assert _post(client, aid, "generate_inputs", user).status_code == 200
    dag_id, run_id, _, _ = gateway.triggered[-1]
    gateway.runs[(dag_id, run_id)] = RunInfo("failed", end_date=NOW)
    gateway.tis[(dag_id, run_id)] = [
        TaskInstanceInfo("prepare-input-generation-params", -1, "success", 1, start_date=NOW),
        TaskInstanceInfo("prepare-keys-file", 0, "success", 1, start_date=NOW),
        TaskInstanceInfo("prepare-keys-file", 1, "failed", 3, start_date=NOW),
        TaskInstanceInfo("prepare-keys-file", 2, "skipped", 1, start_date=NOW),
        TaskInstanceInfo("collect-keys", -1, "upstream_failed", 0),
        TaskInstanceInfo("write-input-files", -1, "upstream_failed", 0),
        TaskInstanceInfo("cleanup-input-generation", -1, "success", 1, start_date=NOW)]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth(user)).json()["status"] == "INPUTS_GENERATION_ERROR"
    return aid, dag_id, run_id


def test_resume_clears_only_the_failed_part(client, gateway, setup) -> None:
    aid, dag_id, run_id = _failed_inputs(client, gateway, setup)
    reply = _post(client, aid, "resume")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "INPUTS_GENERATION_STARTED" and body["task_finished"] is None
    assert body["input_generation_traceback_file"] is None
    assert gateway.resumed == [(dag_id, run_id, [("collect-keys", -1), ("prepare-keys-file", 1),
                                                 ("prepare-keys-file", 2), ("write-input-files", -1)])]
    assert gateway.triggered[-1][1] == run_id  # the same DAG run goes on: nothing new was triggered
    tasks = client.get(f"/v2/analyses/{aid}/sub_task_list/", headers=auth("alice")).json()
    states = {t["slug"]: t["status"] for t in tasks}
    assert states["prepare-keys-file-0"] == "COMPLETED" and states["prepare-keys-file-1"] == "PENDING"
    assert states["prepare-keys-file-2"] == "PENDING" and states["collect-keys"] == "PENDING"
    # the run goes on and succeeds: the analysis reaches READY as any run would
    gateway.runs[(dag_id, run_id)] = RunInfo("running")
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "INPUTS_GENERATION_STARTED"
    # resuming again while it runs is a forbidden transition
    reply = _post(client, aid, "resume")
    assert reply.status_code == 409 and "resume is allowed only from INPUTS_GENERATION_ERROR, RUN_ERROR" in \
        reply.json()["detail"]


def test_resume_losses_run_goes_back_to_run_started(client, gateway, setup, analysis_settings, settings) -> None:
    aid = _analysis(client, setup, settings=analysis_settings)["id"]
    assert _post(client, aid, "generate_and_run").status_code == 200
    dag_id, run_id, _, _ = gateway.triggered[-1]
    assert dag_id == BOTH
    gateway.runs[(dag_id, run_id)] = RunInfo("failed", end_date=NOW)
    gateway.tis[(dag_id, run_id)] = [
        TaskInstanceInfo("record-input-files", -1, "success", 1, start_date=NOW),
        TaskInstanceInfo("generate-losses-chunk", 0, "failed", 3, start_date=NOW),
        TaskInstanceInfo("generate-losses-chunk", 1, "success", 1, start_date=NOW),
        TaskInstanceInfo("generate-losses", -1, "skipped", 1, start_date=NOW),  # the v1 path: stays skipped
        TaskInstanceInfo("generate-losses-output", -1, "upstream_failed", 0)]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "RUN_ERROR"
    reply = _post(client, aid, "resume")
    assert reply.status_code == 200 and reply.json()["status"] == "RUN_STARTED"
    assert reply.json()["run_traceback_file"] is None
    assert gateway.resumed[-1][2] == [("generate-losses-chunk", 0), ("generate-losses-output", -1)]


def test_resume_refused(client, gateway, setup, add_member) -> None:
    aid = _analysis(client, setup)["id"]
    reply = _post(client, aid, "resume")  # NEW
    assert reply.status_code == 409 and "analysis status is NEW" in reply.json()["detail"]
    assert client.post(f"/v2/analyses/{aid}/resume/").status_code == 401
    assert client.post(f"/v2/analyses/{aid}/resume/", headers={"Authorization": "Bearer forged"}).status_code == 403
    assert _post(client, 999_999, "resume").status_code == 404
    # a run Airflow no longer has (airflow db clean): 409 saying to start a new run
    aid, dag_id, run_id = _failed_inputs(client, gateway, setup)
    del gateway.runs[(dag_id, run_id)]
    reply = _post(client, aid, "resume")
    assert reply.status_code == 409 and "gone from Airflow" in reply.json()["detail"]
    # Airflow refuses the clear: 503 with its message, status unchanged
    aid, dag_id, run_id = _failed_inputs(client, gateway, setup)
    gateway.fail_next = "Airflow refused to clear: 409 task is running"
    reply = _post(client, aid, "resume")
    assert reply.status_code == 503 and "refused to clear" in reply.json()["detail"]
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("alice")).json()["status"] == "INPUTS_GENERATION_ERROR"


def test_resume_of_another_groups_analysis(client, gateway, setup, add_member) -> None:
    aid, _, _ = _failed_inputs(client, gateway, setup)
    add_member("alice", "team-a")
    add_member("bob", "team-b")
    # the setup objects were created before alice joined a group: give the portfolio team-a
    assert client.patch(f"/v2/portfolios/{setup[1]['id']}/", json={"groups": ["team-a"]},
                        headers=auth("alice")).status_code == 200
    assert _post(client, aid, "resume", "bob").status_code == 403
    assert client.get(f"/v2/analyses/{aid}/", headers=auth("bob")).status_code == 404


def test_resume_targets_and_clear_body_match_airflow() -> None:
    from airflow.api_fastapi.core_api.datamodels.task_instances import ClearTaskInstancesBody

    tis = [TaskInstanceInfo("a", -1, "success"), TaskInstanceInfo("chunk", 0, "failed"),
           TaskInstanceInfo("chunk", 1, "skipped"), TaskInstanceInfo("chunk", 2, "success"),
           TaskInstanceInfo("v1-path", -1, "skipped"), TaskInstanceInfo("merge", -1, "upstream_failed"),
           TaskInstanceInfo("other", 3, "skipped")]
    targets = resume_targets(tis)
    assert targets == [("chunk", 0), ("chunk", 1), ("merge", -1)]
    body = ClearTaskInstancesBody.model_validate(clear_body("run-1", targets))
    assert body.dry_run is False and body.dag_run_id == "run-1" and body.reset_dag_runs is True
    assert body.include_downstream is True and body.only_failed is False
    assert body.task_ids == [("chunk", 0), ("chunk", 1), "merge"]
    assert resume_targets([TaskInstanceInfo("a", -1, "success"), TaskInstanceInfo("b", 0, "skipped")]) == []


def test_airflow_gateway_resume_posts_clear_task_instances() -> None:
    """AirflowGateway.resume over HTTP: one token request, then the clear with the body Airflow validates."""
    from airflow.api_fastapi.core_api.datamodels.task_instances import ClearTaskInstancesBody

    from perilflow.operators.airflow_api import AirflowApi

    seen: list[httpx.Request] = []

    def airflow(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        if request.url.path.endswith("/clearTaskInstances"):
            ClearTaskInstancesBody.model_validate(json.loads(request.content))
            return httpx.Response(200, json={"task_instances": [], "total_entries": 2})
        return httpx.Response(404, json={"detail": "not found"})

    class Gateway(AirflowGateway):
        def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstanceInfo]:
            return [TaskInstanceInfo("chunk", 4, "failed"), TaskInstanceInfo("merge", -1, "upstream_failed")]

    api = AirflowApi("http://airflow.test", user="svc", password="pw")
    api.client = httpx.Client(transport=httpx.MockTransport(airflow))
    cleared = Gateway().resume("perilflow losses", "analysis-1-run-x", api=api)
    assert cleared == [("chunk", 4), ("merge", -1)]
    post = seen[-1]
    assert post.method == "POST" and post.url.raw_path == b"/api/v2/dags/perilflow%20losses/clearTaskInstances"
    assert post.headers["authorization"] == "Bearer tok"
    assert json.loads(post.content)["task_ids"] == [["chunk", 4], "merge"]
    # Airflow's refusal becomes a WorkflowError naming the run
    api.client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(409, json={"detail": "busy"})))
    with pytest.raises(WorkflowError, match="analysis-1-run-x"):
        Gateway().resume("d", "analysis-1-run-x", api=api)


def test_resume_route_in_openapi(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v2/analyses/{analysis_pk}/resume/"]
