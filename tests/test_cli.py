"""The perilflow command as a user runs it: help everywhere, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import require_shared

EXE = Path(sys.executable).with_name("perilflow")


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "perilflow.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [
    [], ["fm-run"], ["exposure-run"], ["generate-files"], ["convert"], ["run"], ["warm-up"], ["db", "migrate"],
    ["demo"],
    ["platform"], ["platform", "start"], ["platform", "stop"], ["platform", "status"], ["models", "register"],
    ["portfolios", "upload"], *(["analyses", c] for c in ("create", "run", "generate-inputs", "run-losses", "cancel",
                                                           "resume", "status", "wait", "download"))])
def test_help_everywhere(command: list[str]) -> None:
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: perilflow" in done.stdout


def test_unknown_command_is_a_usage_error() -> None:
    assert run("no-such-command").returncode == 2


@pytest.mark.slow
def test_warm_up_fills_an_empty_numba_cache_that_a_second_run_only_reads(tmp_path: Path) -> None:
    """``make test`` runs ``perilflow warm-up`` before its parallel tests: every loss kernel of a run must land
    in the cache (GUL, FM, and each ORD output), and a second run must load them, not compile them again."""
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "perilflow.cli"]
    first = subprocess.run([*cmd, "warm-up"], capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr
    assert f"numba cache: {cache}" in first.stdout
    indexes = {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.nbi")}
    for kernel in ("core.sample_events", "random.philox4x32_7", "compute._compute_events", "summary._summarise_kernel",
                   "elt._selt_kernel", "elt._melt_kernel", "elt._qelt_kernel", "plt._splt_kernel", "plt._mplt_kernel",
                   "plt._qplt_kernel", "aal._aal_kernel", "ept._ep_kernel", "writers._format_kernel"):
        assert any(name.startswith(kernel + "-") for name in indexes), f"{kernel} was not cached"

    second = subprocess.run([*cmd, "warm-up"], capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.nbi")} == indexes, "the second run compiled again"


@pytest.mark.reference
def test_exposure_run_with_reinsurance(tmp_path: Path) -> None:
    suite = require_shared("fm-validation/reinsurance4")
    done = run("exposure-run", "--location", str(suite / "location.csv"), "--account", str(suite / "account.csv"),
               "--ri-info", str(suite / "ri_info.csv"), "--ri-scope", str(suite / "ri_scope.csv"),
               "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(tmp_path / "loc_summary.csv")
    assert list(summary.columns) == ["PortNumber", "AccNumber", "LocNumber", "loss_gul", "loss_il", "loss_ri"]
    assert (summary["loss_ri"] <= summary["loss_il"] + 1e-6).all()


def test_missing_file_is_one_line_with_the_fix(tmp_path: Path) -> None:
    done = run("exposure-run", "--location", str(tmp_path / "nope.csv"), "--account", str(tmp_path / "a.csv"),
               "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nope.csv" in done.stderr and "Fix" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_server_is_one_line_naming_the_fix() -> None:
    from tests.conftest import free_port

    done = run("analyses", "status", "1", "--server", f"http://127.0.0.1:{free_port()}/perilflow", "--token", "t")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "cannot reach" in done.stderr and "perilflow platform start" in done.stderr


def test_no_credentials_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    done = run("analyses", "status", "1", "--server", "http://127.0.0.1:9/perilflow", "--home", str(tmp_path))
    assert done.returncode == 1
    assert "--token" in done.stderr and done.stderr.count("\n") == 1


def test_platform_status_of_a_folder_without_a_platform(tmp_path: Path) -> None:
    done = run("platform", "status", "--home", str(tmp_path))
    assert done.returncode == 1
    assert '"stopped"' in done.stdout and "api-server" in done.stdout
