"""The Perilflow API end to end, over HTTP only, on a real Airflow (api-server, scheduler, dag-processor).

The plugin loads from the ``airflow.plugins`` entry point and is served by the api-server at
``/perilflow``; its product DB is a second throwaway PostgreSQL database, migrated before the
platform starts (``PERILFLOW_DATABASE_URL`` in every component's env, so the scheduler's
listener records outcomes too). The test logs in through ``/perilflow/access_token/``,
creates the PiWind model, uploads the loc10 portfolio, creates an analysis with settings,
runs ``generate_and_run`` and polls until RUN_COMPLETED, checks the ORD files of
``output_file/``; then runs the losses again with a worker that sleeps in every chunk and
cancels it mid-flight: RUN_CANCELLED, sub-tasks CANCELLED, no worker process left.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import require_services
from tests.integration.harness import PG, USER, AirflowPlatform, PlatformError, pg_execute, wrapper_worker
from tests.ord_checks import assert_alt_matches_reference

pytestmark = [pytest.mark.integration, pytest.mark.reference, pytest.mark.slow, pytest.mark.xdist_group("airflow")]

ORD_FILES = [f"{p}_S1_{kind}.csv" for p in ("gul", "il", "ri") for kind in ("ept", "melt", "palt", "psept")]
RUNTIME = {"model_data_dir": "model_data/PiWind", "lookup_config_json": "keys_data/PiWind/lookup_config.json",
           "lookup_data_dir": "keys_data/PiWind", "model_settings_json": "meta-data/model_settings.json",
           "gul_alloc_rule": 1}
EXPOSURE = {"location_file": "SourceLocOEDPiWind10.csv", "accounts_file": "SourceAccOEDPiWind.csv",
            "reinsurance_info_file": "SourceReinsInfoOEDPiWind.csv",
            "reinsurance_scope_file": "SourceReinsScopeOEDPiWind.csv"}
TERMINAL = {"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED", "INPUTS_GENERATION_ERROR", "INPUTS_GENERATION_NO_KEYS",
            "INPUTS_GENERATION_CANCELLED", "READY"}


@pytest.fixture(scope="module")
def product_db() -> Any:
    """A throwaway PostgreSQL database for the product DB, migrated; dropped at the end."""
    require_services()
    from perilflow.plugins.db.migrate import migrate

    name = f"perilflow_api_{secrets.token_hex(4)}"
    pg_execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def platform(piwind, product_db):
    with AirflowPlatform(executor="LocalExecutor", parallelism=4, name="api",
                         env={"PERILFLOW_DATABASE_URL": product_db}) as started:
        yield started


class Api:
    """The Perilflow API over HTTP with a token from ``/perilflow/access_token/``."""

    def __init__(self, platform: AirflowPlatform) -> None:
        self.platform = platform
        reply = platform.client.post("/perilflow/access_token/", json={"username": USER, "password": "admin"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["access_token"] and body["refresh_token"]
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}

    def __call__(self, method: str, path: str, expect: int | None = 200, **kwargs: Any) -> Any:
        reply = self.platform.client.request(method, f"/perilflow/{path.lstrip('/')}", headers=self.headers,
                                             **kwargs)
        if expect is not None and reply.status_code != expect:
            raise PlatformError(f"{method} {path}: {reply.status_code} {reply.text[:2000]}\n"
                                f"{self.platform.log_tail('api-server', 60)}")
        return reply

    def wait(self, analysis_id: int, done: set[str], timeout: float, seen: list[dict[str, Any]]) -> dict[str, Any]:
        """Poll the analysis (bounded); ``seen`` collects each (status, status_count) change."""
        deadline = time.monotonic() + timeout
        analysis: dict[str, Any] = {}
        while time.monotonic() < deadline:
            analysis = self("GET", f"v2/analyses/{analysis_id}/").json()
            entry = {"status": analysis["status"], "status_count": analysis["status_count"]}
            if not seen or seen[-1] != entry:
                seen.append(entry)
            if analysis["status"] in done:
                return analysis
            self.platform._check_alive()
            time.sleep(1)
        tasks = self("GET", f"v2/analyses/{analysis_id}/sub_task_list/").json()
        raise PlatformError(f"analysis {analysis_id} still {analysis.get('status')} after {timeout:.0f} s; "
                            f"sub-tasks {[(t['slug'], t['status']) for t in tasks]}\n{self.platform.logs()}")


@pytest.fixture(scope="module")
def api(platform) -> Api:
    return Api(platform)


@pytest.fixture(scope="module")
def completed(api, piwind, tmp_path_factory) -> dict[str, Any]:
    """PiWind loc10 generate_and_run through the API, polled until it ends."""
    t0 = time.monotonic()
    model = api("POST", "v2/models/", 201, json={"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1",
                                                 "data_files": [], "runtime": RUNTIME}).json()
    api("POST", f"v2/models/{model['id']}/chunking_configuration/",
        json={"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 2})
    portfolio = api("POST", "v2/portfolios/", 201, json={"name": "PiWind loc10"}).json()
    for route, name in EXPOSURE.items():
        path = piwind / "exposure_data" / name
        api("POST", f"v2/portfolios/{portfolio['id']}/{route}/",
            files={"file": (name, path.read_bytes(), "text/csv")})
    settings = json.loads((piwind / "analysis_settings" / "ord_all_outputs_s10.json").read_text())
    analysis = api("POST", "v2/analyses/", 201, json={"name": "e2e", "portfolio": portfolio["id"],
                                                      "model": model["id"]}).json()
    api("POST", f"v2/analyses/{analysis['id']}/settings/", json=settings)
    started = api("POST", f"v2/analyses/{analysis['id']}/generate_and_run/").json()
    seen: list[dict[str, Any]] = []
    final = api.wait(analysis["id"], TERMINAL - {"READY"}, 300, seen)
    elapsed = time.monotonic() - t0
    tasks = api("GET", f"v2/analyses/{analysis['id']}/sub_task_list/").json()
    out: dict[str, Any] = {"model": model, "portfolio": portfolio, "analysis": final, "started": started,
                           "seen": seen, "tasks": tasks, "elapsed": elapsed, "output": None}
    if final["status"] == "RUN_COMPLETED":
        reply = api("GET", f"v2/analyses/{analysis['id']}/output_file/")
        target = tmp_path_factory.mktemp("e2e-output")
        with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as archive:
            archive.extractall(target, filter="data")
        out["output"] = target
    return out


def test_generate_and_run_over_http_completes(api, completed) -> None:
    analysis, seen = completed["analysis"], completed["seen"]
    assert completed["started"]["status"] == "INPUTS_GENERATION_QUEUED"
    assert analysis["status"] == "RUN_COMPLETED", (seen, [(t["slug"], t["status"]) for t in completed["tasks"]])
    statuses = [s["status"] for s in seen]
    # the statuses the client saw go forward only (polling may miss the short ones)
    order = ["INPUTS_GENERATION_QUEUED", "INPUTS_GENERATION_STARTED", "RUN_STARTED", "RUN_COMPLETED"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses), statuses
    assert "INPUTS_GENERATION_STARTED" in statuses or "RUN_STARTED" in statuses, statuses
    counts = analysis["status_count"]
    assert counts["TOTAL"] == analysis["sub_task_count"] == len(completed["tasks"]) > 0
    assert counts["ERROR"] == 0 and counts["PENDING"] == counts["QUEUED"] == counts["STARTED"] == 0
    assert counts["COMPLETED"] + counts["CANCELLED"] == counts["TOTAL"]
    slugs = {t["slug"]: t["status"] for t in completed["tasks"]}
    for slug in ("prepare-keys-file-0", "prepare-keys-file-1", "generate-losses-chunk-0", "generate-losses-chunk-1",
                 "record-input-files", "record-losses-files"):
        assert slugs[slug] == "COMPLETED", slugs
    assert slugs["generate-losses"] == "CANCELLED"  # the v1 task, skipped in run mode v2
    for field in ("input_file", "output_file", "lookup_success_file", "lookup_errors_file"):
        assert analysis[field] and analysis[field].startswith(f"{api.platform.url}/perilflow/v2/analyses/"), field
    assert analysis["task_started"] and analysis["task_finished"]


def test_output_file_has_the_ord_files_of_the_reference(completed) -> None:
    output = completed["output"]
    assert output is not None
    names = {p.name for p in output.rglob("*") if p.is_file()}
    assert set(ORD_FILES) <= names, sorted(names)
    assert_alt_matches_reference(output)


def test_input_file_and_lookup_files_download(api, completed) -> None:
    analysis_id = completed["analysis"]["id"]
    reply = api("GET", f"v2/analyses/{analysis_id}/input_file/")
    with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as archive:
        names = {Path(n).name for n in archive.getnames()}
    assert {"coverages.bin", "fm_policytc.bin", "account.csv"} <= names, sorted(names)
    keys = api("GET", f"v2/analyses/{analysis_id}/lookup_success_file/").text
    assert keys.splitlines()[0] and len(keys.splitlines()) > 1


def test_tar_routes_and_task_logs_on_the_live_run(api, completed) -> None:
    """output_file_tar_list/_extract/ and the sub-tasks' Airflow logs (read over Airflow's REST API)."""
    analysis_id = completed["analysis"]["id"]
    names = api("GET", f"v2/analyses/{analysis_id}/output_file_tar_list/").json()
    palt = next(n for n in names if n.endswith("gul_S1_palt.csv"))
    assert set(ORD_FILES) <= {Path(n).name for n in names}
    extracted = api("GET", f"v2/analyses/{analysis_id}/output_file_tar_extract/", params={"filename": palt})
    assert extracted.content == next(completed["output"].rglob("gul_S1_palt.csv")).read_bytes()
    assert api("GET", f"v2/analyses/{analysis_id}/output_file_tar_extract/", 400,
               params={"filename": "../" + palt}).status_code == 400
    progress = api("GET", f"v2/analyses/{analysis_id}/run_progress/").json()
    assert progress["progress"] == "2/2 gul stages complete"
    chunk = next(t for t in completed["tasks"] if t["slug"] == "generate-losses-chunk-0")
    statuses = api("GET", "v2/analysis-task-statuses/", params={"analysis": analysis_id}).json()
    assert chunk["id"] in {t["id"] for t in statuses}
    log = api("GET", f"v2/analysis-task-statuses/{chunk['id']}/output_log/").text
    assert "generate-losses-chunk" in log, log[:2000]


def test_cancel_a_slow_run_mid_flight(api, completed) -> None:
    """run/ with a worker sleeping 120 s in every chunk; cancel once two chunks run."""
    platform = api.platform
    assert completed["analysis"]["status"] == "RUN_COMPLETED"
    worker = wrapper_worker(platform.home / "bin" / "api-sleepy", "api-sleepy-worker",
                            sleep={"generate-losses-chunk": 120})
    slow = api("POST", "v2/models/", 201, json={"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "slow",
                                                "runtime": {**RUNTIME, "worker_command": [str(worker)]}}).json()
    api("POST", f"v2/models/{slow['id']}/chunking_configuration/", json={"fixed_analysis_chunks": 3})
    analysis_id = completed["analysis"]["id"]
    api("PATCH", f"v2/analyses/{analysis_id}/", json={"model": slow["id"]})
    queued = api("POST", f"v2/analyses/{analysis_id}/run/").json()
    assert queued["status"] == "RUN_QUEUED" and queued["sub_task_list"]

    deadline = time.monotonic() + 150
    running: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = api("GET", f"v2/analyses/{analysis_id}/sub_task_list/",
                    params={"subtask_status": "STARTED"}).json()
        running = [t for t in tasks if t["slug"].startswith("generate-losses-chunk-")]
        if len(running) >= 2 and len(platform.strays(str(worker))) >= 2:
            break
        time.sleep(1)
    assert len(running) >= 2, "two chunks did not start in time"
    assert api("GET", f"v2/analyses/{analysis_id}/").json()["status"] == "RUN_STARTED"

    t0 = time.monotonic()
    cancelled = api("POST", f"v2/analyses/{analysis_id}/cancel/").json()
    assert cancelled["status"] == "RUN_CANCELLED"
    while platform.strays(str(worker.parent)) and time.monotonic() < t0 + 10:
        time.sleep(0.25)
    left = [p.info["cmdline"][:3] for p in platform.strays(str(worker.parent))]
    assert not left, f"still running {time.monotonic() - t0:.1f} s after cancel: {left}"

    # the run has ended in Airflow; the analysis stays cancelled and its sub-tasks show it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        analysis = api("GET", f"v2/analyses/{analysis_id}/").json()
        tasks = api("GET", f"v2/analyses/{analysis_id}/sub_task_list/").json()
        if not any(t["status"] in ("PENDING", "QUEUED", "STARTED") for t in tasks):
            break
        time.sleep(1)
    assert analysis["status"] == "RUN_CANCELLED"
    states = {t["slug"]: t["status"] for t in tasks}
    chunks = {slug: s for slug, s in states.items() if slug.startswith("generate-losses-chunk-")}
    assert len(chunks) == 3 and set(chunks.values()) == {"CANCELLED"}, states
    assert set(states.values()) <= {"COMPLETED", "CANCELLED"}, states
    assert analysis["status_count"]["CANCELLED"] >= 3 and analysis["status_count"]["ERROR"] == 0
    # a cancelled run has no output; the completed run's output was cleared when this run started
    assert api("GET", f"v2/analyses/{analysis_id}/output_file/", expect=404).status_code == 404


def test_the_listener_records_the_outcome_without_a_reader(api, completed, product_db) -> None:
    """generate_inputs, then nobody polls the API: the scheduler's listener sets READY and the files."""
    from sqlalchemy import create_engine, text

    copy = api("POST", f"v2/analyses/{completed['analysis']['id']}/copy/", 201,
               json={"name": "listener", "model": completed["model"]["id"]}).json()
    queued = api("POST", f"v2/analyses/{copy['id']}/generate_inputs/").json()
    assert queued["status"] == "INPUTS_GENERATION_QUEUED"
    engine = create_engine(product_db)
    seen = []
    try:
        deadline = time.monotonic() + 180
        row = None
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT status, input_file, lookup_success_file, task_finished "
                                        "FROM analyses WHERE id = :id"), {"id": copy["id"]}).one()
            if not seen or seen[-1] != row.status:
                seen.append(row.status)
            if row.status not in ("INPUTS_GENERATION_QUEUED", "INPUTS_GENERATION_STARTED"):
                break
            api.platform._check_alive()
            time.sleep(1)
    finally:
        engine.dispose()
    assert row is not None and row.status == "READY", (seen, api.platform.log_tail("scheduler", 60))
    assert "INPUTS_GENERATION_STARTED" in seen  # on_dag_run_running
    assert row.input_file.endswith("/input.tar.gz") and row.lookup_success_file and row.task_finished


def test_algorithm_tasks_on_the_live_platform(api) -> None:
    """Issue 9 end to end on a real scheduler: an uploaded dataset, a row-counting script that SUCCEEDS
    (log captured, output dataset downloadable), a failing command that ends FAILED with its stderr in
    the log, and a sleeping one cancelled mid-run: CANCELLED, its process gone within 10 s."""
    import sys

    from tests.operators.test_algorithm_dag import COUNT_ROWS, FAILING

    marker = f"perilflow-sleepy-algorithm-{secrets.token_hex(4)}"
    dataset = api("POST", "v2/datasets/", 201, json={"name": "rows"}).json()
    api("POST", f"v2/datasets/{dataset['id']}/files/",
        files=[("files", ("a.csv", b"x,y\n1,2\n3,4\n5,6\n")), ("files", ("sub/b.csv", b"z\n7\n"))])

    def start(name: str, command: list[str], env: dict[str, str] | None = None) -> int:
        algorithm = api("POST", "v2/algorithms/", 201, json={"name": name, "command": command,
                                                             "environment": env or {}}).json()
        task = api("POST", "v2/algorithm-tasks/", 201, json={"name": name, "algorithm": algorithm["id"],
                                                             "input_dataset": dataset["id"]}).json()
        assert api("POST", f"v2/algorithm-tasks/{task['id']}/run/").json()["status"] == "QUEUED"
        return task["id"]

    def wait(task_id: int, done: set[str], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = api("GET", f"v2/algorithm-tasks/{task_id}/").json()
            if task["status"] in done:
                return task
            api.platform._check_alive()
            time.sleep(1)
        raise PlatformError(f"algorithm task {task_id} still {task['status']} after {timeout:.0f} s\n"
                            f"{api.platform.logs()}")

    counting = start("count rows", [sys.executable, "-c", COUNT_ROWS], {"GREETING": "hi"})
    failing = start("fails", [sys.executable, "-c", FAILING])
    sleepy = start("sleeps", [sys.executable, "-c", f"import time; time.sleep(300)  # {marker}"])

    done = wait(counting, {"SUCCEEDED", "FAILED", "CANCELLED"})
    assert done["status"] == "SUCCEEDED" and done["exit_code"] == 0, done
    log = api("GET", f"v2/algorithm-tasks/{counting}/output_log/").text
    assert "counted 2 files, 4 rows; greeting hi" in log and "a warning on stderr" in log, log
    out = api("GET", f"v2/algorithm-tasks/{counting}/output_dataset/").json()
    files = {f["name"]: f for f in out["files"]}
    assert sorted(files) == ["detail/total.txt", "summary.csv"]
    summary = api("GET", f"v2/datasets/{out['id']}/files/{files['summary.csv']['id']}/").text
    assert summary == "file,rows\na.csv,3\nsub/b.csv,1\n"
    with tarfile.open(fileobj=io.BytesIO(api("GET", f"v2/datasets/{out['id']}/download/").content)) as archive:
        assert archive.extractfile("detail/total.txt").read() == b"4"  # type: ignore[union-attr]

    bad = wait(failing, {"SUCCEEDED", "FAILED", "CANCELLED"})
    assert bad["status"] == "FAILED" and bad["exit_code"] == 3, bad
    assert "boom: no such column LocNumber" in api("GET", f"v2/algorithm-tasks/{failing}/output_log/").text
    api("GET", f"v2/algorithm-tasks/{failing}/output_dataset/", expect=404)

    deadline = time.monotonic() + 150
    while not api.platform.strays(marker):
        assert time.monotonic() < deadline, f"the sleeping algorithm did not start\n{api.platform.logs()}"
        assert api("GET", f"v2/algorithm-tasks/{sleepy}/").json()["status"] in ("QUEUED", "RUNNING")
        time.sleep(0.5)
    assert wait(sleepy, {"RUNNING"}, 30)["status"] == "RUNNING"
    t0 = time.monotonic()
    assert api("POST", f"v2/algorithm-tasks/{sleepy}/cancel/").json()["status"] == "CANCELLED"
    while api.platform.strays(marker) and time.monotonic() < t0 + 10:
        time.sleep(0.25)
    assert not api.platform.strays(marker), f"still running {time.monotonic() - t0:.1f} s after cancel"
    deadline = time.monotonic() + 30
    while api("GET", f"v2/algorithm-tasks/{sleepy}/").json()["status"] != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(1)
    api("GET", f"v2/algorithm-tasks/{sleepy}/output_dataset/", expect=404)
