"""DRF's LimitOffsetPagination for the list routes.

Without ``limit`` a list route answers a plain JSON list, as the reference does without
pagination parameters; with ``limit`` it answers ``{count, next, previous, results}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from perilflow.plugins.api.auth import api_base

LimitQuery = Annotated[int | None, Query(ge=1, le=10_000, description="page size (DRF LimitOffsetPagination)")]
OffsetQuery = Annotated[int, Query(ge=0, description="rows to skip (with limit)")]


def page_url(request: Request, limit: int, offset: int) -> str:
    """The URL of another page of the same list, filters kept."""
    query = dict(request.query_params)
    query.update(limit=str(limit), offset=str(offset))
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    return f"{api_base(request)}{path}?{urlencode(query)}"


def page(request: Request, count: int, limit: int, offset: int, results: list[Any]) -> dict[str, Any]:
    return {"count": count,
            "next": page_url(request, limit, offset + limit) if offset + limit < count else None,
            "previous": page_url(request, limit, max(offset - limit, 0)) if offset > 0 else None,
            "results": results}


def count_rows(db: Session, stmt: Select[Any]) -> int:
    """How many rows ``stmt`` selects (its ordering dropped)."""
    return db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


def paginate(request: Request, db: Session, stmt: Select[Any], limit: int | None, offset: int,
             to_json: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]] | dict[str, Any]:
    """Run ``stmt`` (ORM entities, ordered) as a plain list, or one page of it when ``limit`` is given."""
    if limit is None:
        return [to_json(row) for row in db.scalars(stmt)]
    count = count_rows(db, stmt)
    rows = [to_json(row) for row in db.scalars(stmt.limit(limit).offset(offset))]
    return page(request, count, limit, offset, rows)
