"""The Airflow plugin: mounts the Perilflow API at /perilflow on the api-server.

Registered through the ``airflow.plugins`` entry point (setup.cfg), so it loads from the
installed package. The app is built when Airflow loads plugins (the api-server; plugins
load lazily), reading PERILFLOW_* settings from the environment.
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
URL_PREFIX = "/perilflow"


def _apps() -> list[dict[str, object]]:
    try:
        from perilflow.plugins.api.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Perilflow API"}]
    except Exception:  # noqa: BLE001 - a broken plugin must not stop the api-server; the log says why
        log.exception("the Perilflow API could not be built; it is not mounted")
        return []


def _listeners() -> list[object]:
    try:
        from perilflow.plugins import listener

        return [listener]
    except Exception:  # noqa: BLE001 - as above: log, do not stop the scheduler
        log.exception("the Perilflow listener could not be loaded; outcomes are recorded when clients read them")
        return []


def _external_views() -> list[dict[str, object]]:
    """"Perilflow" in Airflow's navigation: the web UI's analyses page, shown in an iframe at /plugin/perilflow."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    # an api-server under a sub-path ([api] base_url = https://host/airflow) serves the app at /airflow/perilflow
    base = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    ui = f"{base}{URL_PREFIX}/ui/"
    return [{"name": "Perilflow", "href": ui, "destination": "nav", "url_route": "perilflow",
             "icon": f"{ui}icon.svg", "nav_top_level": True}]


class PerilflowPlugin(AirflowPlugin):
    name = "perilflow"
    fastapi_apps = _apps()
    # records each analysis run's outcome in the product DB when Airflow ends the run (scheduler, api-server)
    listeners = _listeners()
    external_views = _external_views()
