"""``perilflow demo`` (``make demo``): a real analysis of the bundled demo model on the local platform.

Steps, each through the public interfaces a user has:

1. start the local platform (:mod:`perilflow.platform`) unless it runs;
2. write the demo model (:mod:`perilflow.kernel.demo`) into the platform's model root;
3. over the REST API only: register the model, upload the demo OED portfolio, create an
   analysis with the demo's analysis settings, ``generate_and_run/``, and follow its
   sub-tasks with a progress bar until it ends;
4. download the ORD outputs, print the results table (AAL, OEP/AEP at 10-1000 years for
   GUL, IL and RI net) and write an HTML report with the EP curves to
   ``<home>/reports/analysis-<id>.html``;
5. print where the UI is and how to log in.

A second ``make demo`` reuses the running platform, the model and the portfolio: only a new
analysis runs.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from perilflow.client import ApiError, PerilflowClient, Progress
from perilflow.platform import ADMIN_USER, LocalPlatform

DEMO_FOLDER = "demo"
PORTFOLIO_NAME = "Perilflow demo portfolio"


def demo_runtime() -> dict[str, Any]:
    """The model's run-time files, relative to the platform's model root."""
    return {"model_data_dir": f"{DEMO_FOLDER}/model_data",
            "lookup_config_json": f"{DEMO_FOLDER}/keys_data/lookup_config.json",
            "lookup_data_dir": f"{DEMO_FOLDER}/keys_data",
            "model_settings_json": f"{DEMO_FOLDER}/meta-data/model_settings.json",
            "gul_alloc_rule": 1}


def progress_printer(stream: TextIO) -> Callable[[Progress], None]:
    """Redraw one line on a terminal; elsewhere print a line whenever the progress changes."""
    last: list[str] = [""]
    tty = stream.isatty()

    def show(progress: Progress) -> None:
        line = progress.line()
        if tty:
            stream.write("\r" + line.ljust(len(last[0])))
        elif line != last[0]:
            stream.write(line + "\n")
        stream.flush()
        last[0] = line

    return show


def _portfolio(client: PerilflowClient, exposure: Path) -> dict[str, Any]:
    for portfolio in client.request("GET", "v2/portfolios/", params={"name": PORTFOLIO_NAME}) or []:
        if portfolio.get("location_file") and portfolio.get("accounts_file"):
            return dict(portfolio)
    return client.upload_portfolio(PORTFOLIO_NAME, {
        "location": exposure / "location.csv", "account": exposure / "account.csv",
        "ri_info": exposure / "ri_info.csv", "ri_scope": exposure / "ri_scope.csv"})


def run_demo(home: Path, *, port: int, out: TextIO = sys.stdout, timeout: float = 900,
             open_browser: bool = False) -> dict[str, Any]:
    """Run the demo end to end; returns what it made (analysis, output folder, report, table)."""
    from perilflow.kernel.demo import build as demo_build
    from perilflow.kernel.demo import write_demo_model
    from perilflow.report import read_results, results_table, write_html_report

    t0 = time.monotonic()

    def say(message: str) -> None:
        out.write(f"[{time.monotonic() - t0:5.0f}s] {message}\n")
        out.flush()

    platform = LocalPlatform(home, port=port)
    platform.start(progress=say)
    config = write_demo_model(platform.models / DEMO_FOLDER)
    folder = config.parent
    say(f"demo model {demo_build.SUPPLIER_ID}/{demo_build.MODEL_ID} {demo_build.DEMO_MODEL_VERSION} in {folder}")

    password = platform.secrets()["admin_password"]
    with PerilflowClient(platform.api_url, username=ADMIN_USER, password=password) as client:
        model = client.find_or_create_model(demo_build.SUPPLIER_ID, demo_build.MODEL_ID,
                                            demo_build.DEMO_MODEL_VERSION, runtime=demo_runtime())
        client.request("POST", f"v2/models/{model['id']}/settings/",
                       json=json.loads((folder / "meta-data" / "model_settings.json").read_text()))
        portfolio = _portfolio(client, folder / "exposure")
        say(f"model {model['id']} registered, portfolio {portfolio['id']} uploaded; running generate_and_run")
        settings = json.loads((folder / "analysis_settings.json").read_text())
        analysis = client.create_analysis(f"Demo analysis {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                          portfolio["id"], model["id"], settings)
        client.action(analysis["id"], "generate_and_run")
        final = client.wait(analysis["id"], timeout=timeout, poll=1.0, on_progress=progress_printer(out))
        out.write("\n")
        if final["status"] != "RUN_COMPLETED":
            raise ApiError(f"analysis {analysis['id']} ended {final['status']}; "
                               f"`perilflow analyses status {analysis['id']}` and the UI show why")
        target = platform.reports / f"analysis-{analysis['id']}"
        archive = client.download(f"v2/analyses/{analysis['id']}/output_file/", target / "output.tar.gz")
    output = target / "output"
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(output, filter="data")
    output = output / "output" if (output / "output").is_dir() else output
    results = read_results(output, settings)
    table = results_table(results)
    report = write_html_report(results, platform.reports / f"analysis-{analysis['id']}.html",
                               title=f"Perilflow demo - analysis {analysis['id']} ({demo_build.MODEL_ID})")
    say(f"analysis {analysis['id']} RUN_COMPLETED")
    out.write(f"\n{table}\n\n")
    out.write(f"HTML report with EP curves: {report}\n")
    out.write(f"ORD outputs: {output}\n")
    out.write(f"Airflow UI: {platform.url}/  (Perilflow page: {platform.url}/plugin/perilflow)\n")
    out.write(f"Login: {ADMIN_USER} / {password}   REST API: {platform.api_url}/docs\n")
    out.write(f"Stop the platform with `perilflow platform stop` (home {platform.home}).\n")
    out.flush()
    if open_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        import webbrowser  # only with a screen: on a server it could start a text browser in this terminal

        webbrowser.open(f"{platform.url}/plugin/perilflow")
    return {"analysis": final, "output": output, "report": report, "table": table,
            "seconds": time.monotonic() - t0}
