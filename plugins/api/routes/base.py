"""Unversioned routes: healthcheck, healthcheck_connections, server_info, oed_peril_codes, access_token,
refresh_token."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import httpx
from fastapi import APIRouter, Header, HTTPException, Request, status

from perilflow.plugins.api.auth import CallerDep, SettingsDep
from perilflow.plugins.api.schemas import TokenIn

router = APIRouter(tags=["base"])


@router.get("/healthcheck/", summary="Liveness check (no authentication)")
def healthcheck() -> dict[str, str]:
    return {"status": "OK"}


@router.get("/healthcheck_connections/", response_model=None,
            summary="Deep check: product DB, storage and Airflow's metadata DB (no authentication; 503 if one is down)")
def healthcheck_connections(request: Request, settings: SettingsDep) -> Any:
    """``{"status": "OK", ...}`` as the reference, with one entry per connection; 503 naming what is down.
    Only "OK"/"ERROR" per connection: the details go to the server log, not to anonymous callers."""
    import logging

    from fastapi.responses import JSONResponse
    from sqlalchemy import text

    from perilflow.plugins.api import files

    log = logging.getLogger(__name__)
    checks: dict[str, str] = {}
    try:
        with request.app.state.perilflow_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "OK"
    except Exception:  # noqa: BLE001 - any driver error means "down"
        log.exception("healthcheck: the product DB does not answer")
        checks["database"] = "ERROR"
    try:
        files.storage_path(settings, settings.storage_url).exists()
        checks["storage"] = "OK"
    except Exception:  # noqa: BLE001 - any fsspec/boto error means "down"
        log.exception("healthcheck: storage %s does not answer", settings.storage_url)
        checks["storage"] = "ERROR"
    try:
        request.app.state.perilflow_gateway.ping()
        checks["airflow"] = "OK"
    except Exception:  # noqa: BLE001 - WorkflowError or a driver error
        log.exception("healthcheck: Airflow's metadata DB does not answer")
        checks["airflow"] = "ERROR"
    ok = all(value == "OK" for value in checks.values())
    return JSONResponse({"status": "OK" if ok else "ERROR", **checks}, status_code=200 if ok else 503)


@router.get("/server_info/", summary="Versions and the auth type (no authentication)")
def server_info(request: Request, settings: SettingsDep) -> dict[str, Any]:
    import perilflow

    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover - the plugin always runs with Airflow
        airflow_version = None
    engine = request.app.state.perilflow_engine
    return {
        "version": perilflow.__version__,
        "airflow_version": airflow_version,
        "config": {
            "API_AUTH_TYPE": settings.auth_type,
            "DEFAULT_DB": {"ENGINE": engine.dialect.name},
            "STORAGE_TYPE": settings.storage_url.split("://", 1)[0],
            "MAX_UPLOAD_MB": settings.max_upload_mb,
            "ANALYSIS_PRIORITY_ADMIN_LEVELS": list(settings.admin_priorities),
        },
    }


@lru_cache(maxsize=1)
def _peril_codes() -> dict[str, Any]:
    from perilflow.kernel.oed.exposure import oed_schema

    perils = oed_schema().schema["perils"]
    codes: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for code, info in perils["info"].items():
        desc = info.get("Peril Description", "")
        if str(info.get("Grouped PerilCode", "No")).lower() == "yes":
            groups[code] = {"desc": desc, "peril_ids": list(perils["covered"].get(code, []))}
        else:
            codes[code] = {"desc": desc}
    return {"peril_codes": codes, "peril_groups": groups}


@router.get("/oed_peril_codes/", summary="OED peril codes and peril groups")
def oed_peril_codes(caller: CallerDep) -> dict[str, Any]:
    return _peril_codes()


def _airflow_token(settings: Any, body: dict[str, str]) -> str:
    try:
        reply = httpx.post(f"{settings.airflow_url}/auth/token", json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Airflow's /auth/token did not answer: {exc}") from None
    if reply.status_code in (401, 403):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid username or password")
    if reply.status_code >= 300:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Airflow's /auth/token answered {reply.status_code}")
    return reply.json()["access_token"]


@router.post("/access_token/", summary="Log in with username and password (proxied to Airflow's /auth/token)")
def access_token(body: TokenIn, settings: SettingsDep) -> dict[str, Any]:
    token = _airflow_token(settings, body.model_dump())
    # Airflow issues one kind of token; it doubles as the refresh token (a refresh checks it is still valid).
    return {"access_token": token, "refresh_token": token, "token_type": "Bearer"}


@router.post("/refresh_token/", summary="A new access token for a still-valid token")
async def refresh_token(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "send the refresh token as 'Authorization: Bearer <token>'")
    token = authorization.split(" ", 1)[1]
    user = await resolve_user_from_token(token)
    auth_manager = getattr(request.app.state, "auth_manager", None)
    if auth_manager is None:
        from airflow.api_fastapi.app import get_auth_manager

        auth_manager = get_auth_manager()
    new = auth_manager.generate_jwt(user)
    return {"access_token": new, "refresh_token": new, "token_type": "Bearer"}
