"""Fixtures of the security tests: the API test app of tests/plugins (SQLite and PostgreSQL, fake
Airflow user, fake gateway) with a tiny upload limit, so oversize bodies are cheap to send."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from perilflow.plugins.settings import ApiSettings
from tests.plugins.conftest import add_member, app, client, db_url, gateway  # noqa: F401 - fixtures

#: PERILFLOW_MAX_UPLOAD_MB of the test app: 16 KiB (the PiWind exposure files are 0.2-1.5 KiB)
MAX_UPLOAD_MB = 1 / 64


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> ApiSettings:  # noqa: F811 - overrides tests/plugins' limit
    return ApiSettings(database_url=db_url, storage_url=f"file://{tmp_path / 'storage'}", max_upload_mb=MAX_UPLOAD_MB,
                       airflow_url="http://127.0.0.1:9")


@pytest.fixture
def storage_root(settings: ApiSettings) -> Path:
    return Path(settings.storage_url.removeprefix("file://"))


#: what the security tests checked (inputs sent per fuzz test, access-matrix cells), shown after the run
COUNTS: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter) -> None:
    if COUNTS:
        summary = ", ".join(f"{name} {count}" for name, count in sorted(COUNTS.items()))
        terminalreporter.write_line(f"security tests checked: {summary}")
