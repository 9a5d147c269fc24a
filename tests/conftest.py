"""Shared test helpers: locating the reference data in ../shared.

Test modules use them as ``from tests.conftest import require_shared`` (tests/ is a package,
so pytest puts the repo root on sys.path), or through the ``shared`` fixture.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
