"""Request guard (ASGI middleware): a body-size cap on every route, and JSON numbers the API can store.

* A request body larger than PERILFLOW_MAX_UPLOAD_MB (plus room for multipart headers) is
  refused with 413 before it is read: at once when Content-Length says so, else as soon as the
  streamed body passes the cap. Without it a multipart upload is spooled whole to the server's
  temporary folder before the route can look at its size.
* A JSON body whose numbers are not finite (``NaN``, ``Infinity``, ``1e999``) or do not fit in
  64 bits is refused with 422 naming the field: Python's json module accepts them, but they
  cannot be stored (PostgreSQL JSON has no Infinity), be returned (replies are strict JSON) or
  be used by a model run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException, status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: room for multipart boundaries and part headers on top of the upload limit
MULTIPART_SLACK = 64 * 1024
INT64 = 2**63 - 1


def too_large(limit_mb: float) -> str:
    return (f"the request body is larger than the upload limit of {limit_mb:g} MiB; "
            "raise PERILFLOW_MAX_UPLOAD_MB or link the file from storage")


def bad_numbers(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(field path, problem)`` for every number in ``value`` that is not finite or not a 64-bit integer."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from bad_numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from bad_numbers(item, f"{path}.{index}" if path else str(index))
    elif isinstance(value, float) and not math.isfinite(value):
        yield path or "non_field_errors", f"{value} is not a finite number; send a number within ±1.8e308"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        yield path or "non_field_errors", "the integer does not fit in 64 bits; send one within ±9223372036854775807"


class RequestGuard:
    """The middleware; ``max_body`` is the upload limit in bytes, ``limit_mb`` the same for messages."""

    def __init__(self, app: ASGIApp, max_body: int, limit_mb: float) -> None:
        self.app = app
        self.cap = max_body + MULTIPART_SLACK
        self.limit_mb = limit_mb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.cap:
            await JSONResponse({"detail": too_large(self.limit_mb)}, status.HTTP_413_CONTENT_TOO_LARGE)(
                scope, receive, send)
            return
        if "json" in headers.get("content-type", ""):
            await self._json(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.cap:
                # FastAPI re-raises an HTTPException raised while it reads the body
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, too_large(self.limit_mb))
            return message

        await self.app(scope, counted, send)

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the (capped) JSON body, refuse numbers the API cannot keep, then hand the body on."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.cap:
                await JSONResponse({"detail": too_large(self.limit_mb)}, status.HTTP_413_CONTENT_TOO_LARGE)(
                    scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problems: dict[str, list[str]] = {}
        try:
            parsed = json.loads(body) if body.strip() else None
        except json.JSONDecodeError:
            parsed = None  # the route's own parsing answers 422 with the position
        except ValueError as exc:  # not UTF-8, or an integer of thousands of digits
            parsed = None
            problems["non_field_errors"] = [f"the body is not valid JSON ({exc}); send UTF-8 JSON"]
        for field, problem in bad_numbers(parsed):
            problems.setdefault(field, []).append(problem)
        if problems:
            await JSONResponse(problems, status.HTTP_422_UNPROCESSABLE_CONTENT)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
