"""Faults on a real platform (issue 8): killed steps, a killed scheduler, cancel, storage outage, memory, resume.

One platform for the module (api-server, scheduler, dag-processor, LocalExecutor with 4 slots
on a fresh PostgreSQL database, plus the Perilflow API on a second one), configured as a
cluster is: run folders on S3 (a moto server on loopback, reached through :class:`Relay`, a
TCP relay the tests can take down), retries 2 attempts. Reads ../shared/piwind (PiWind loc10).

Every disturbed run is compared byte for byte with an undisturbed one (``reference``): the
ORD files of ``output.tar.gz`` are the same whatever was killed or retried on the way.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import free_port
from tests.integration.conftest import assert_same_folder, require_services
from tests.integration.harness import (
    FINISHED_TI,
    USER,
    AirflowPlatform,
    losses_conf,
    piwind_conf,
    wrapper_worker,
)
from tests.integration.test_api_end_to_end import EXPOSURE, RUNTIME, Api, product_db  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.reference, pytest.mark.slow]

GENERATE_AND_RUN = "perilflow_generate_and_run"
LOSSES = "perilflow_losses_generation"
BUCKET, PREFIX = "perilflow", f"faults-{secrets.token_hex(3)}"
CLI = str(Path(sys.executable).with_name("perilflow"))


class Relay:
    """A TCP relay on loopback in front of the S3 server: the endpoint the platform is given.

    :meth:`stop` closes the listening socket and every open connection (the endpoint is down:
    connection refused, as when S3 is unreachable), :meth:`start` listens on the same port again;
    the objects stay, as they do in a real S3 outage (restarting moto itself would lose them).
    :meth:`cut_upload` arms a one-time cut: the next ``PUT`` whose request line names ``key``
    is forwarded with half of its body, then the relay stops (an upload cut mid-body).
    """

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut_key: bytes | None = None
        self.cut = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
            listener, self._listener = self._listener, None
        for sock in [s for s in (listener, *sockets) if s is not None]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut_upload(self, key: str) -> None:
        self.cut.clear()
        self._cut_key = key.encode()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        cutting = False
        try:
            while data := source.recv(1 << 16):
                key = self._cut_key
                if upstream and key and not cutting and data.startswith(b"PUT ") and key in data.split(b"\r\n")[0]:
                    head, blank, body = data.partition(b"\r\n\r\n")
                    if not body:  # headers alone (Expect: 100-continue): the body comes next
                        target.sendall(data)
                        cutting = True
                        continue
                    data, cutting = head + blank + body[: len(body) // 2], True
                if cutting and upstream:
                    target.sendall(data if data.startswith(b"PUT ") else data[: max(1, len(data) // 2)])
                    self._cut_key = None
                    self.cut.set()
                    self.stop()
                    return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass


@pytest.fixture(scope="module")
def s3(moto_s3):
    """The relay in front of the session's moto server, and a boto3 client straight to moto."""
    import boto3

    relay = Relay(int(moto_s3["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]))
    relay.start()
    client = boto3.client("s3", endpoint_url=moto_s3["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    with pytest.MonkeyPatch.context() as patch:  # this process reads the run folders straight from moto
        for key, value in moto_s3.items():
            patch.setenv(key, value)
        yield {"relay": relay, "client": client}
    relay.stop()


@pytest.fixture(scope="module")
def platform(piwind, product_db, s3):  # noqa: F811 - the fixture imported above
    require_services()
    relay: Relay = s3["relay"]
    conn = {"conn_type": "aws", "login": "test", "password": "test",
            "extra": {"endpoint_url": relay.url, "region_name": "us-east-1"}}
    env = {"PERILFLOW_DATABASE_URL": product_db, "PERILFLOW_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
           "PERILFLOW_STORAGE_CONN_ID": "perilflow_s3", "AIRFLOW_CONN_PERILFLOW_S3": json.dumps(conn),
           # a restarted scheduler takes over a dead one's task instances within ~20 s (defaults: 30 s + 300 s)
           "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
           "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5"}
    with AirflowPlatform(executor="LocalExecutor", parallelism=4, name="faults", env=env) as started:
        yield started


def keys(s3: dict[str, Any], prefix: str = "") -> list[str]:
    """Every object key under this module's prefix (straight from moto, whatever the relay does)."""
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/{prefix}")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def fetch_output(uri: str, target: Path) -> Path:
    from perilflow.kernel.storage import fetch_tar

    return fetch_tar(uri, target)


def tar_folder(content: bytes, target: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module")
def reference(platform, piwind, tmp_path_factory) -> dict[str, Any]:
    """An undisturbed generate_and_run (3 lookup chunks, 3 loss chunks): the outputs every fault run must equal."""
    conf = piwind_conf(piwind, 201, chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 3})
    run_id = platform.trigger(GENERATE_AND_RUN, conf)
    run = platform.wait_run(GENERATE_AND_RUN, run_id, timeout=300)
    assert run["state"] == "success", sorted((k, ti["state"]) for k, ti in platform.tis(GENERATE_AND_RUN,
                                                                                        run_id).items())
    inputs = platform.xcom(GENERATE_AND_RUN, run_id, "record-input-files")
    record = platform.xcom(GENERATE_AND_RUN, run_id, "record-losses-files")
    output = fetch_output(record["output_file"], tmp_path_factory.mktemp("reference") / "output")
    return {"conf": conf, "inputs": inputs, "record": record, "output": output}


def find_step(marker: str, step: str, index: int) -> psutil.Process | None:
    """The live process of a model step that has begun its wait: ``marker`` (its wrapper's path), step
    name and chunk index in its argv, and its start already in the wrapper's journal.

    A process is visible with its argv before the interpreter has run the wrapper's first line; a
    kill in that gap would leave no journal line for the first try.
    """
    started = {int(line.split()[0]) for line in _journal_lines(Path(marker))}
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info.get("cmdline") or []
        if (marker in " ".join(argv) and step in argv and f'"chunk_index": {index},' in argv[-1]
                and process.pid in started):
            return process
    return None


def _journal_lines(worker: Path) -> list[str]:
    path = worker.parent / "journal"
    return [line for line in path.read_text().split("\n") if line.strip()] if path.exists() else []


def journal(worker: Path) -> list[tuple[str, int]]:
    """The (step, chunk index) of every start of the wrapper."""
    return [(parts[1], int(parts[2])) for parts in (line.split() for line in _journal_lines(worker))]


def wait_gone(platform: AirflowPlatform, marker: str, seconds: float) -> list[Any]:
    deadline = time.monotonic() + seconds
    while platform.strays(marker) and time.monotonic() < deadline:
        time.sleep(0.25)
    return [p.info["cmdline"][:3] for p in platform.strays(marker)]


def test_kill_9_of_steps_and_a_task_process_is_retried_to_identical_outputs(platform, reference, tmp_path) -> None:
    """kill -9 of lookup chunk 1's step, loss chunk 0's step and loss chunk 2's task process (first tries).

    The kills land while the step's process waits (4 s) before the real worker starts: PiWind
    loc10's steps take about a second, too short to aim at. Chunk 2's kill hits the Airflow
    task process that runs the step (its parent); the step dies with it (PR_SET_PDEATHSIG).
    """
    worker = wrapper_worker(platform.home / "bin" / "kill9", "kill9-worker", sleep={
        "prepare-keys-file": 4, "generate-losses-chunk": 4})
    conf = {**reference["conf"], "analysis_id": 202, "model": {**reference["conf"]["model"],
                                                               "worker_command": [str(worker)]}}
    run_id = platform.trigger(GENERATE_AND_RUN, conf)
    killed = {}
    for step, index, what in (("prepare-keys-file", 1, "step"), ("generate-losses-chunk", 0, "step"),
                              ("generate-losses-chunk", 2, "task process")):
        deadline = time.monotonic() + 150
        while (process := find_step(str(worker), step, index)) is None and time.monotonic() < deadline:
            platform._check_alive()
            time.sleep(0.2)
        assert process is not None, f"{step} {index} did not start: {platform.tis(GENERATE_AND_RUN, run_id)}"
        target = process if what == "step" else process.parent()
        target.kill()  # SIGKILL
        killed[(step, index)] = (what, process.pid)
    run = platform.wait_run(GENERATE_AND_RUN, run_id, timeout=300)
    tis = platform.tis(GENERATE_AND_RUN, run_id)
    assert run["state"] == "success", sorted((k, ti["state"], ti["try_number"]) for k, ti in tis.items())
    tries = {k: ti["try_number"] for k, ti in tis.items() if ti["state"] == "success"}
    assert {k for k, n in tries.items() if n != 1} == set(killed), tries
    assert all(tries[k] == 2 for k in killed), tries
    starts = journal(worker)
    for step, index in killed:
        assert starts.count((step, index)) == 2, starts
    assert not [pid for _, pid in killed.values() if psutil.pid_exists(pid) and
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    record = platform.xcom(GENERATE_AND_RUN, run_id, "record-losses-files")
    assert_same_folder(reference["output"], fetch_output(record["output_file"], tmp_path / "out"))


def test_scheduler_killed_mid_run_and_restarted(platform, reference, s3, tmp_path) -> None:
    """kill -9 of the scheduler and every process it started (its LocalExecutor workers, their task
    processes and model steps: what a crash of its container does) while 3 loss chunks run; a new
    scheduler takes over.

    The chunks the crash interrupted are reset by the new scheduler (their scheduler job is dead)
    and run again as try 2; no try runs twice: each chunk's try that stored a result is the task
    instance's last, and the wrapper saw one start per try at most.
    """
    worker = wrapper_worker(platform.home / "bin" / "crash", "crash-worker", sleep={"generate-losses-chunk": 6})
    conf = losses_conf(reference["conf"], reference["inputs"]["input_file"], analysis_id=203,
                       model={**reference["conf"]["model"], "worker_command": [str(worker)]},
                       chunking={"fixed_analysis_chunks": 3})
    run_id = platform.trigger(LOSSES, conf)
    deadline = time.monotonic() + 150
    while len(platform.strays(str(worker))) < 2 and time.monotonic() < deadline:
        platform._check_alive()
        time.sleep(0.25)
    assert len(platform.strays(str(worker))) >= 2, "the chunks did not start"
    plan = platform.xcom(LOSSES, run_id, "prepare-losses-generation-params", key="cleanup")
    steps = platform.strays(plan["folder"])  # the chunks' step processes (their params name the run's folder)
    killed = platform.kill("scheduler")
    assert steps and {p.pid for p in steps} <= set(killed)
    time.sleep(2)
    platform.restart("scheduler")
    run = platform.wait_run(LOSSES, run_id, timeout=300)
    tis = platform.tis(LOSSES, run_id)
    assert run["state"] == "success", sorted((k, ti["state"], ti["try_number"]) for k, ti in tis.items())
    record = platform.xcom(LOSSES, run_id, "record-losses-files")
    assert_same_folder(reference["output"], fetch_output(record["output_file"], tmp_path / "out"))
    chunks = {k[1]: ti for k, ti in tis.items() if k[0] == "generate-losses-chunk"}
    assert sorted(chunks) == [0, 1, 2] and any(ti["try_number"] > 1 for ti in chunks.values()), chunks
    folder = record["folder"][len(f"s3://{BUCKET}/{PREFIX}/"):]
    logs = [k.rsplit("/", 1)[1] for k in keys(s3, f"{folder}/logs/")]
    starts = journal(worker)
    for index, ti in chunks.items():
        stored = sorted(name for name in logs if name.startswith(f"generate-losses-chunk-{index}-try"))
        # a try that ran to its end stored its log; only the last one did, so one result was written per chunk
        assert stored == [f"generate-losses-chunk-{index}-try{ti['try_number']}.log"], (index, logs)
        assert starts.count(("generate-losses-chunk", index)) <= ti["try_number"], (index, starts)
    assert not [k for k in keys(s3, folder) if k.endswith(".tmp") or "/work-" in k]


@pytest.fixture(scope="module")
def api(platform) -> Api:
    return Api(platform)


@pytest.fixture(scope="module")
def objects(api, piwind) -> dict[str, Any]:
    """Models (normal, sleepy, flaky), the PiWind loc10 portfolio and an analysis with settings, over the API."""
    platform = api.platform
    sleepy = wrapper_worker(platform.home / "bin" / "api-sleepy", "api-sleepy-worker",
                            sleep={"prepare-keys-file": 120, "generate-losses-chunk": 120})
    flag = platform.home / "bin" / "flaky" / "fail"
    flaky = wrapper_worker(flag.parent, "flaky-worker", fail_chunks=[1], fail_while=flag, fail_after=8)
    flag.touch()
    models = {}
    for version, command in (("1", None), ("sleepy", sleepy), ("flaky", flaky)):
        runtime = {**RUNTIME, **({"worker_command": [str(command)]} if command else {})}
        model = api("POST", "v2/models/", 201, json={"supplier_id": "OasisLMF", "model_id": "PiWind",
                                                     "version_id": version, "runtime": runtime}).json()
        api("POST", f"v2/models/{model['id']}/chunking_configuration/",
            json={"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 3})
        models[version] = model
    portfolio = api("POST", "v2/portfolios/", 201, json={"name": "PiWind loc10"}).json()
    for route, name in EXPOSURE.items():
        path = piwind / "exposure_data" / name
        api("POST", f"v2/portfolios/{portfolio['id']}/{route}/", files={"file": (name, path.read_bytes(), "text/csv")})
    analysis = api("POST", "v2/analyses/", 201, json={"name": "faults", "portfolio": portfolio["id"],
                                                      "model": models["sleepy"]["id"]}).json()
    settings = json.loads((piwind / "analysis_settings" / "ord_all_outputs_s10.json").read_text())
    api("POST", f"v2/analyses/{analysis['id']}/settings/", json=settings)
    return {"models": models, "analysis": analysis["id"], "sleepy": sleepy, "flaky": flaky, "flag": flag}


def cancel_when_running(api: Api, analysis_id: int, worker: Path, step: str, want: str) -> dict[str, Any]:
    """Wait until two ``step`` processes of ``worker`` run, cancel through the API, check nothing is left in 10 s."""
    platform = api.platform
    deadline = time.monotonic() + 180
    while len([p for p in platform.strays(str(worker)) if step in p.info["cmdline"]]) < 2:
        assert time.monotonic() < deadline, f"two {step} processes did not start"
        platform._check_alive()
        time.sleep(0.5)
    assert api("GET", f"v2/analyses/{analysis_id}/").json()["status"] == want.replace("CANCELLED", "STARTED")
    t0 = time.monotonic()
    cancelled = api("POST", f"v2/analyses/{analysis_id}/cancel/").json()
    assert cancelled["status"] == want
    left = wait_gone(platform, str(worker), 10 - (time.monotonic() - t0))
    assert not left, f"still running {time.monotonic() - t0:.1f} s after cancel: {left}"
    deadline = time.monotonic() + 30
    while True:
        tasks = api("GET", f"v2/analyses/{analysis_id}/sub_task_list/").json()
        if not any(t["status"] in ("PENDING", "QUEUED", "STARTED") for t in tasks) or time.monotonic() > deadline:
            break
        time.sleep(1)
    analysis = api("GET", f"v2/analyses/{analysis_id}/").json()
    assert analysis["status"] == want
    states = {t["slug"]: t["status"] for t in tasks}
    prefix = step + "-"
    assert {s for slug, s in states.items() if slug.startswith(prefix)} == {"CANCELLED"}, states
    assert set(states.values()) <= {"COMPLETED", "CANCELLED"}, states
    return analysis


def test_cancel_during_input_generation_then_a_new_run(api, objects, s3) -> None:
    aid = objects["analysis"]
    queued = api("POST", f"v2/analyses/{aid}/generate_and_run/").json()
    assert queued["status"] == "INPUTS_GENERATION_QUEUED"
    analysis = cancel_when_running(api, aid, objects["sleepy"], "prepare-keys-file", "INPUTS_GENERATION_CANCELLED")
    assert analysis["input_file"] is None and analysis["output_file"] is None
    assert not [k for k in keys(s3, f"analysis-{aid}_") if k.endswith(("/input.tar.gz", "/output.tar.gz"))]
    assert not [k for k in keys(s3, f"analysis-{aid}_") if "/lookup-" in k or "/exposure/" in k]  # removed
    api("PATCH", f"v2/analyses/{aid}/", json={"model": objects["models"]["1"]["id"]})
    api("POST", f"v2/analyses/{aid}/generate_inputs/")
    assert api.wait(aid, {"READY", "INPUTS_GENERATION_ERROR", "INPUTS_GENERATION_CANCELLED"}, 240,
                    [])["status"] == "READY"


def test_cancel_during_losses_then_a_new_run(api, objects, reference, s3, tmp_path) -> None:
    aid = objects["analysis"]
    api("PATCH", f"v2/analyses/{aid}/", json={"model": objects["models"]["sleepy"]["id"]})
    assert api("POST", f"v2/analyses/{aid}/run/").json()["status"] == "RUN_QUEUED"
    analysis = cancel_when_running(api, aid, objects["sleepy"], "generate-losses-chunk", "RUN_CANCELLED")
    assert analysis["output_file"] is None
    assert api("GET", f"v2/analyses/{aid}/output_file/", expect=404).status_code == 404
    assert not [k for k in keys(s3, f"analysis-{aid}_losses-") if k.endswith("/output.tar.gz") or "/work-" in k
                or k.endswith("/run_directory.tar.gz")]
    api("PATCH", f"v2/analyses/{aid}/", json={"model": objects["models"]["1"]["id"]})
    api("POST", f"v2/analyses/{aid}/run/")
    assert api.wait(aid, {"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED"}, 240, [])["status"] == "RUN_COMPLETED"
    output = tar_folder(api("GET", f"v2/analyses/{aid}/output_file/").content, tmp_path / "out")
    assert_same_folder(reference["output"], output)


def test_resume_reruns_only_the_failed_chunk(api, objects, reference, tmp_path) -> None:
    """Chunk 1 of 3 fails on both attempts (after the others finished): RUN_ERROR. With the fault gone,
    ``perilflow analyses resume`` clears the failed part: chunk 1 runs again, chunks 0 and 2 do not."""
    platform = api.platform
    aid = objects["analysis"]
    api("PATCH", f"v2/analyses/{aid}/", json={"model": objects["models"]["flaky"]["id"]})
    api("POST", f"v2/analyses/{aid}/run/")
    failed = api.wait(aid, {"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED"}, 240, [])
    assert failed["status"] == "RUN_ERROR"
    runs = platform.request("GET", f"/api/v2/dags/{LOSSES}/dagRuns", params={"limit": 100}).json()["dag_runs"]
    run_id = max((r for r in runs if r["dag_run_id"].startswith(f"analysis-{aid}-run-")),
                 key=lambda r: r["run_after"])["dag_run_id"]
    before = platform.tis(LOSSES, run_id)
    assert [before[("generate-losses-chunk", i)]["state"] for i in range(3)] == ["success", "failed", "success"]

    objects["flag"].unlink()  # the fault is gone
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PERILFLOW_"))}
    resumed = subprocess.run([CLI, "analyses", "resume", str(aid), "--server", f"{platform.url}/perilflow",
                              "--username", USER, "--password", "admin"], capture_output=True, text=True,
                             timeout=60, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "RUN_STARTED"
    done = api.wait(aid, {"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED"}, 240, [])
    after = platform.tis(LOSSES, run_id)
    assert done["status"] == "RUN_COMPLETED", sorted((k, ti["state"], ti["try_number"]) for k, ti in after.items())
    assert [after[("generate-losses-chunk", i)]["try_number"] for i in range(3)] == [1, 3, 1]
    assert journal(objects["flaky"]).count(("generate-losses-chunk", 0)) == 1
    assert after[("prepare-losses-generation-directory", -1)]["try_number"] == 1
    output = tar_folder(api("GET", f"v2/analyses/{aid}/output_file/").content, tmp_path / "out")
    assert_same_folder(reference["output"], output)
    again = api("POST", f"v2/analyses/{aid}/resume/", expect=409).json()
    assert "resume is allowed only from" in json.dumps(again)


def test_a_step_over_its_memory_limit_fails_clearly(platform, reference) -> None:
    """The model's memory limit (150 MiB, ``resources.limits.memory``, which the local backend enforces on
    the step's resident memory) against a step that would allocate 4 GiB: killed near the limit on both
    attempts with "memory limit" in its log; the run fails and nothing is left running."""
    worker = wrapper_worker(platform.home / "bin" / "hog", "hog-worker",
                            hog_mb={"prepare-losses-generation-directory": 4096})
    model = {**reference["conf"]["model"], "worker_command": [str(worker)],
             "resources": {"limits": {"memory": "150Mi"}}}
    run_id = platform.trigger(LOSSES, losses_conf(reference["conf"], reference["inputs"]["input_file"],
                                                  analysis_id=205, model=model))
    run = platform.wait_run(LOSSES, run_id, timeout=180)
    tis = platform.tis(LOSSES, run_id)
    step = tis[("prepare-losses-generation-directory", -1)]
    assert run["state"] == "failed" and step["state"] == "failed" and step["try_number"] == 2, tis
    for attempt in (1, 2):
        log = platform.ti_log(LOSSES, run_id, "prepare-losses-generation-directory", try_number=attempt)
        assert "exceeded its memory limit of 150 MiB" in log, log[-2000:]
    reached = [int(p.read_text()) for p in worker.parent.glob("hog-[0-9]*")]
    assert len(reached) == 2 and max(reached) < 1024, reached  # stopped far below the 4 GiB it asked for
    assert all(ti["state"] in FINISHED_TI for ti in tis.values())
    assert {tis[("generate-losses-output", -1)]["state"], tis[("record-losses-files", -1)]["state"]} == \
        {"upstream_failed"}
    assert wait_gone(platform, str(worker), 10) == []


def test_storage_outage_mid_run_is_retried_and_leaves_no_partial_object(platform, reference, s3, tmp_path) -> None:
    """The S3 endpoint goes down while both loss chunks run, and later cuts the merge step's output upload
    mid-body: each fails with the storage error in its log and is retried once the endpoint is back; no
    ``output.tar.gz`` (nor a temporary object) exists between the cut and the retry; same outputs."""
    relay: Relay = s3["relay"]
    folder = platform.home / "bin" / "outage"
    back = {"generate-losses-chunk": folder / "chunks-may-retry", "generate-losses-output": folder / "output-may-retry"}
    # retries wait for the test to bring the endpoint back (they once outran it on a loaded machine)
    worker = wrapper_worker(folder, "outage-worker", sleep={"generate-losses-chunk": 5, "generate-losses-output": 3},
                            hold_retries=back)
    model = {**reference["conf"]["model"], "worker_command": [str(worker)], "env": {"AWS_MAX_ATTEMPTS": "2"}}
    relay.cut_upload("output.tar.gz")
    run_id = platform.trigger(LOSSES, losses_conf(reference["conf"], reference["inputs"]["input_file"],
                                                  analysis_id=206, model=model,
                                                  chunking={"fixed_analysis_chunks": 2}))
    try:
        deadline = time.monotonic() + 150
        while len(platform.strays(str(worker))) < 2:
            assert time.monotonic() < deadline, "the chunks did not start"
            time.sleep(0.2)
        relay.stop()
        platform.wait_tis(LOSSES, run_id, lambda tis: all(
            tis[("generate-losses-chunk", i)]["try_number"] == 2 for i in (0, 1)), timeout=120, poll=0.3)
        relay.start()
        back["generate-losses-chunk"].touch()
        assert relay.cut.wait(150), "the output upload was not seen"
        plan = platform.xcom(LOSSES, run_id, "prepare-losses-generation-params", key="cleanup")
        folder = plan["folder"][len(f"s3://{BUCKET}/{PREFIX}/"):]
        assert not [k for k in keys(s3, folder) if "output.tar.gz" in k], keys(s3, folder)
        platform.wait_tis(LOSSES, run_id, lambda tis: tis[("generate-losses-output", -1)]["try_number"] == 2,
                          timeout=120, poll=0.3)
    finally:
        if relay._listener is None:
            relay.start()
        for path in back.values():
            path.touch()
    run = platform.wait_run(LOSSES, run_id, timeout=180)
    tis = platform.tis(LOSSES, run_id)
    assert run["state"] == "success", sorted((k, ti["state"], ti["try_number"]) for k, ti in tis.items())
    for task_id, index in (("generate-losses-chunk", 0), ("generate-losses-chunk", 1), ("generate-losses-output", -1)):
        assert tis[(task_id, index)]["try_number"] == 2
        log = platform.ti_log(LOSSES, run_id, task_id, index, try_number=1)
        assert "Could not connect to the endpoint URL" in log or "Connection was closed" in log, log[-3000:]
    record = platform.xcom(LOSSES, run_id, "record-losses-files")
    assert_same_folder(reference["output"], fetch_output(record["output_file"], tmp_path / "out"))
    assert not [k for k in keys(s3, folder) if k.endswith(".tmp")], keys(s3, folder)
    assert [k for k in keys(s3, folder) if "output.tar.gz" in k] == [f"{PREFIX}/{folder}/output.tar.gz"]

