"""`make demo`'s path, headless: `perilflow demo --no-browser` on the embedded default, then the CLI.

The demo starts the local platform (Airflow on SQLite with the LocalExecutor, api-server on a
free loopback port, everything under a temporary PERILFLOW_HOME), registers the bundled demo
model, uploads its portfolio, runs generate_and_run through the REST API and prints the results
table. The test then drives the platform with the other CLI commands a user has (status,
analyses status/download/create/run/wait/cancel) and stops it. No PostgreSQL is needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXE = str(Path(sys.executable).with_name("perilflow"))
RETURN_PERIODS = ("10y", "50y", "100y", "250y", "500y", "1000y")


def cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PERILFLOW_"))}
    env["PERILFLOW_HOME"] = str(home)
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo") / ".perilflow"
    port = free_port()
    t0 = time.monotonic()
    done = cli(home, "demo", "--no-browser", "--port", str(port), timeout=900)
    elapsed = time.monotonic() - t0
    try:
        yield {"home": home, "port": port, "done": done, "seconds": elapsed}
    finally:
        stopped = cli(home, "platform", "stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr


def test_demo_prints_the_results_table(demo) -> None:
    done = demo["done"]
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    assert "RUN_COMPLETED" in out
    header = next(line for line in out.splitlines() if "GUL" in line and "IL" in line)
    assert "RI" in header
    for label in ["AAL"] + [f"{kind} {rp}" for kind in ("OEP", "AEP") for rp in RETURN_PERIODS]:
        row = next((line for line in out.splitlines() if line.startswith(label + " ")), None)
        assert row is not None, f"no {label} row in:\n{out}"
        values = [float(v.replace(",", "")) for v in re.findall(r"[\d,]+(?:\.\d+)?", row[len(label):])]
        assert len(values) == 3 and values[0] >= values[1] >= 0, row  # GUL >= IL
    assert re.search(r"sub-tasks", out), "no progress bar lines"
    assert "Login: admin / " in out and f"http://127.0.0.1:{demo['port']}/" in out


def test_demo_wrote_the_report_and_the_outputs(demo) -> None:
    reports = demo["home"] / "reports"
    html = sorted(reports.glob("analysis-*.html"))
    assert len(html) == 1
    text = html[0].read_text()
    assert "<svg" in text and "OEP" in text
    assert not re.search(r"""(src|href)=["']https?://""", text), "the report must not load anything from the network"
    output = next(p for p in (reports / "analysis-1" / "output").rglob("gul_S1_palt.csv"))
    alt = pd.read_csv(output)
    assert (alt["MeanLoss"] > 0).all()


def test_platform_status_and_the_analysis_through_the_cli(demo, tmp_path: Path) -> None:
    home = demo["home"]
    status = cli(home, "platform", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert set(json.loads(status.stdout)["components"]) == {"api-server", "scheduler", "dag-processor"}

    line = cli(home, "analyses", "status", "1")
    assert line.returncode == 0, line.stderr
    assert "RUN_COMPLETED" in line.stdout and "sub-tasks" in line.stdout

    target = tmp_path / "out.tar.gz"
    got = cli(home, "analyses", "download", "1", "-o", str(target))
    assert got.returncode == 0, got.stderr
    with tarfile.open(target) as archive:
        assert any(name.endswith("il_S1_palt.csv") for name in archive.getnames())

    for name in ("lookup_validation_file", "summary_levels_file"):
        got = cli(home, "analyses", "download", "1", "--file", name, "-o", str(tmp_path / f"{name}.json"))
        assert got.returncode == 0, got.stderr
        assert json.loads((tmp_path / f"{name}.json").read_text())

    missing = cli(home, "analyses", "status", "999")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "404" in missing.stderr


def test_a_second_analysis_run_and_cancelled_from_the_cli(demo) -> None:
    home = demo["home"]
    analysis = json.loads(cli(home, "analyses", "create", "--name", "cli", "--portfolio", "1", "--model", "1",
                              "--settings", str(home / "models" / "demo" / "analysis_settings.json")).stdout)
    started = cli(home, "analyses", "run", str(analysis["id"]))
    assert started.returncode == 0, started.stderr
    cancel = cli(home, "analyses", "cancel", str(analysis["id"]))
    assert cancel.returncode == 0, cancel.stderr
    waited = cli(home, "analyses", "wait", str(analysis["id"]), "--timeout", "120", "--poll", "1")
    assert waited.returncode == 3, waited.stdout + waited.stderr  # a cancelled analysis did not succeed
    assert waited.stdout.strip() in ("INPUTS_GENERATION_CANCELLED", "RUN_CANCELLED")

    again = cli(home, "analyses", "run", str(analysis["id"]))
    assert again.returncode == 0, again.stderr
    waited = cli(home, "analyses", "wait", str(analysis["id"]), "--timeout", "300", "--quiet")
    assert waited.returncode == 0 and waited.stdout.strip() == "RUN_COMPLETED", waited.stdout + waited.stderr


def test_a_second_demo_reuses_the_platform(demo) -> None:
    done = cli(demo["home"], "demo", "--no-browser", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "platform already running" in done.stdout
    assert "migrating" not in done.stdout  # nothing set up again
    assert len(list((demo["home"] / "reports").glob("analysis-*.html"))) == 2
