"""Keep the integration tier in one pytest-xdist worker (``make test`` runs ``pytest -n 2``).

Each integration module starts a real Airflow once for all its tests. Under plain ``load``
distribution xdist would spread those tests over both workers, each starting its own
platform, two at once on a two-core machine. ``--dist loadgroup`` with ``xdist_group``
marks should prevent that, but with pytest 9.2 and pytest-xdist 3.8 it groups nothing (the
worker renames ``item._nodeid``, which pytest 9 no longer reads), so this hook, imported by
tests/conftest.py, does the grouping: every test under tests/integration/ is one scope, the
other tests stay one scope each (``load``, as before).
"""

from __future__ import annotations

import pytest

INTEGRATION_PREFIX = "tests/integration/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist other than load is left to xdist
    from xdist.scheduler import LoadGroupScheduling

    class IntegrationScopeScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(INTEGRATION_PREFIX):
                return INTEGRATION_PREFIX
            return super()._split_scope(nodeid)

    return IntegrationScopeScheduling(config, log)
