"""Shared test helpers: locating the reference data in ../shared.

Test modules use them as ``from tests.conftest import require_shared`` (tests/ is a package,
so pytest puts the repo root on sys.path), or through the ``shared`` fixture.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Under pytest -n, the integration tier (one real Airflow per module) stays in one worker.
from tests.integration.xdist_scope import pytest_xdist_make_scheduler  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]

# One isolated Airflow per test process (each pytest-xdist worker): its own AIRFLOW_HOME and SQLite
# metadata DB, never ~/airflow. Set here, in the root conftest, because Airflow reads its configuration
# once, when the process first imports it, and any test module may be the first to do so while being
# collected. tests/operators/conftest.py migrates this DB for the dag.test() runs.
AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(prefix="perilflow-airflow-"))
atexit.register(shutil.rmtree, AIRFLOW_TEST_HOME, True)
os.environ.update({
    "AIRFLOW_HOME": str(AIRFLOW_TEST_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_TEST_HOME / 'airflow.db'}",
})


def shared_dir() -> Path:
    """The shared reference folder: $PERILFLOW_SHARED_DIR, else ../shared next to the repo."""
    override = os.environ.get("PERILFLOW_SHARED_DIR")
    return Path(override).expanduser().resolve() if override else REPO_ROOT.parent / "shared"


def require_shared(path: str | os.PathLike[str] = ".") -> Path:
    """Return ``path`` (relative paths are taken inside shared_dir()) if it exists.

    Otherwise skip the test, or fail it when running in CI (CI=true), where the
    reference data is mandatory.
    """
    p = Path(path)
    if not p.is_absolute():
        p = shared_dir() / p
    if p.exists():
        return p
    if os.environ.get("CI") == "true":
        pytest.fail(f"reference data missing in CI: {p}", pytrace=False)
    pytest.skip(f"reference data not found at {p}; set PERILFLOW_SHARED_DIR")


@pytest.fixture
def shared() -> Path:
    """The shared reference folder (skips, or fails in CI, when it is missing)."""
    return require_shared()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with bucket ``perilflow``; yields the env a worker would get."""
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-500:]}") from None
                time.sleep(0.2)
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint,
               "AWS_DEFAULT_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket="perilflow")
        yield env
    finally:
        server.terminate()
        server.wait(10)
