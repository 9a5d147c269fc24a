"""The Airflow plugin: mounts the Perilflow API at /perilflow on the api-server.

Registered through the ``airflow.plugins`` entry point (setup.cfg), so it loads from the
installed package. The app is built at its first request (:class:`LazyApp`), reading
PERILFLOW_* settings from the environment; the other components load the plugin for its
listener and views only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
URL_PREFIX = "/perilflow"


class LazyApp:
    """The Perilflow API as an ASGI app that is built at its first request, not at plugin load.

    Every Airflow component loads plugins (the scheduler and the dag-processor too, for the
    listener and the views), but only the api-server serves the app: building it at load made each
    of them import FastAPI's routes and open a product-DB engine for nothing. A build that fails is
    logged and answered 503; the next request tries again.
    """

    def __init__(self, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                if self._factory is None:
                    from perilflow.plugins.api.app import create_app

                    self._factory = create_app
                self._app = self._factory()
            return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":  # a mounted app gets none; answer one sent directly
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        try:
            app = self._app or self._build()
        except Exception:  # noqa: BLE001 - a broken plugin must not stop the api-server; the log says why
            log.exception("the Perilflow API could not be built")
            body = b'{"detail": "the Perilflow API could not be built; the api-server log says why"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)


def _apps() -> list[dict[str, object]]:
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Perilflow API"}]


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
