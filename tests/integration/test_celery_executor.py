"""CeleryExecutor with two Celery workers on Redis (results in PostgreSQL): generate_and_run succeeds on both.

A distributed engine on loopback: the scheduler sends task messages through Redis, two
``airflow celery worker`` processes (concurrency 2 each) take them from the platform's own
queue and report results in the run's PostgreSQL database. Each worker reports its own name
as the task instances' ``hostname`` (``[core] hostname_callable``), so the test sees which
worker ran what.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import extract, require_services
from tests.integration.harness import AirflowPlatform, piwind_conf
from tests.ord_checks import assert_alt_matches_reference

pytestmark = [pytest.mark.integration, pytest.mark.reference, pytest.mark.slow]

GENERATE_AND_RUN = "perilflow_generate_and_run"


@pytest.fixture(scope="module")
def platform(piwind):
    require_services()
    with AirflowPlatform(executor="CeleryExecutor", parallelism=4, celery_workers=2, celery_concurrency=2,
                         name="itc") as started:
        yield started


def test_generate_and_run_on_two_celery_workers(platform, piwind, tmp_path) -> None:
    conf = piwind_conf(piwind, 201, chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 3})
    run_id = platform.trigger(GENERATE_AND_RUN, conf)
    run = platform.wait_run(GENERATE_AND_RUN, run_id, timeout=240)
    tis = platform.tis(GENERATE_AND_RUN, run_id)
    assert run["state"] == "success", sorted((k, ti["state"]) for k, ti in tis.items())
    chunks = sorted(ti["rendered_map_index"] for k, ti in tis.items() if k[0] == "generate-losses-chunk")
    assert chunks == ["chunk 1/3", "chunk 2/3", "chunk 3/3"]
    ran = [ti for ti in tis.values() if ti["state"] == "success"]
    assert {ti["queue"] for ti in ran} == {platform.queue}
    hostnames = {ti["hostname"] for ti in ran}
    assert hostnames == {"celery-w1", "celery-w2"}, sorted((ti["task_id"], ti["hostname"]) for ti in ran)
    # the result backend is the run's PostgreSQL database; a worker stores a task's result after the task
    # instance is marked success (through the API), so the last one may land a moment after the run ends
    deadline = time.monotonic() + 20
    while (stored := platform.celery_results()) < len(ran) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored >= len(ran)
    record = platform.xcom(GENERATE_AND_RUN, run_id, "record-losses-files")
    output = extract(record["output_file"], tmp_path / "output")
    assert_alt_matches_reference(output)
