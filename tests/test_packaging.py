"""The distribution is installed as setup.cfg describes, and the kernel stays free of Airflow."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib import metadata

import perilflow
from tests.conftest import REPO_ROOT


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    return cfg


def _cfg_list(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def test_version_matches_setup_cfg() -> None:
    version = _setup_cfg()["metadata"]["version"]
    assert perilflow.__version__ == version
    # A stale install (setup.cfg changed, `make install` not rerun) shows up here.
    assert metadata.version("perilflow") == version


def test_kernel_does_not_import_airflow() -> None:
    code = (
        "import perilflow.kernel, sys; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'); "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_package_folder_is_listed_in_setup_cfg() -> None:
    """Editable installs find any sub-package, but wheels ship only the listed ones."""
    options = _setup_cfg()["options"]
    listed = set(_cfg_list(options["packages"]))
    mapping = dict(line.replace(" ", "").split("=") for line in _cfg_list(options["package_dir"]))
    found = set()
    for package, folder in mapping.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"add to [options] packages in setup.cfg: {sorted(found - listed)}"
