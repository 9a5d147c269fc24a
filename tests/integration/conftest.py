"""The integration tier: a real Airflow (api-server, scheduler, dag-processor) on PostgreSQL.

Each test module starts its own platform (:mod:`tests.integration.harness`) once, shared by
its tests, and stops it at the end. The tests need PostgreSQL and Redis on 127.0.0.1 (the
services of this machine kind and of CI); when they do not answer the tests are skipped
with the reason, except in CI (``CI=true``), where they fail. They also need the PiWind
reference model (../shared/piwind).

Under ``pytest -n`` every test of this folder goes to the same worker
(:mod:`tests.integration.xdist_scope`), so two platforms never compete for the machine's
two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require_shared
from tests.integration.harness import services_answer
from tests.ord_checks import assert_same_folder, extract  # noqa: F401 - the tier's tests import them from here


def require_services() -> None:
    """Skip (or fail in CI) when PostgreSQL or Redis does not answer."""
    missing = services_answer()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"integration services not answering in CI: {missing}", pytrace=False)
    pytest.skip(f"integration services not answering: {missing}")


@pytest.fixture(scope="session")
def piwind() -> Path:
    return require_shared("piwind")


