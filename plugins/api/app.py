"""The app factory: ``create_app(settings, gateway)`` builds the FastAPI app the plugin mounts at /perilflow."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

import perilflow
from perilflow.plugins.api.gateway import WorkflowGateway
from perilflow.plugins.api.guard import RequestGuard
from perilflow.plugins.api.routes import algorithms as algorithm_routes
from perilflow.plugins.api.routes import analyses, base, data_files, groups, models, portfolios, task_statuses
from perilflow.plugins.api.routes import compare as compare_routes
from perilflow.plugins.api.routes import datasets as dataset_routes
from perilflow.plugins.db import make_engine, make_sessionmaker
from perilflow.plugins.settings import ApiSettings
from perilflow.plugins.ui import algorithm_pages  # noqa: F401 - adds the algorithm task pages to ui_pages.router
from perilflow.plugins.ui import pages as ui_pages

DESCRIPTION = """OasisPlatform v2 compatible API of Perilflow. Every route but `healthcheck/` and
`server_info/` needs Airflow's bearer token (`POST access_token/` or Airflow's `/auth/token`)."""


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if ui_pages.is_ui_request(request):  # the web UI's pages answer errors as pages (401: a login link)
        return ui_pages.error_page(request, exc)
    detail: Any = exc.detail
    # the reference (DRF) answers field errors as {field: [messages]}; plain messages as {"detail": ...}
    body = detail if isinstance(detail, dict) else {"detail": detail}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        fields.setdefault(".".join(loc) or "non_field_errors", []).append(err.get("msg", "invalid"))
    # the errors' "input" (the request's own bytes) and "ctx" (may hold exception objects) are not always
    # JSON: keep type, loc and msg, and ctx as text
    detail = [{"type": err.get("type"), "loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg"),
               **({"ctx": {k: str(v) for k, v in err["ctx"].items()}} if err.get("ctx") else {})}
              for err in exc.errors()]
    return JSONResponse({**fields, "detail": detail}, status_code=422)


def create_app(settings: ApiSettings | None = None, gateway: WorkflowGateway | None = None) -> FastAPI:
    """Build the API. ``settings`` defaults to the environment; ``gateway`` to :class:`AirflowGateway`.

    The product DB must be migrated (``perilflow db migrate``) before the app serves requests.
    """
    settings = settings or ApiSettings.from_env()
    if gateway is None:
        from perilflow.plugins.api.gateway import AirflowGateway

        gateway = AirflowGateway()
    app = FastAPI(title="Perilflow API", version=perilflow.__version__, description=DESCRIPTION,
                  docs_url="/docs", redoc_url="/redoc", openapi_url="/openapi.json")
    engine = make_engine(settings.database_url)
    app.state.perilflow_settings = settings
    app.state.perilflow_engine = engine
    app.state.perilflow_sessionmaker = make_sessionmaker(engine)
    app.state.perilflow_gateway = gateway
    app.add_middleware(RequestGuard, max_body=settings.max_upload_bytes, limit_mb=settings.max_upload_mb)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(compare_routes.router)  # before analyses: "compare" and "combine" are not analysis ids
    for module in (base, models, portfolios, analyses, task_statuses, data_files, groups):
        app.include_router(module.router)
    for router in (*algorithm_routes.routers, dataset_routes.router):  # issue 9: algorithm runs and datasets
        app.include_router(router)
    app.include_router(ui_pages.router)  # the web UI at /perilflow/ui/ (analyses and algorithm tasks)
    return app
