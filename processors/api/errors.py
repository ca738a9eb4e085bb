"""The API's error answers: every error is JSON ``{"error": "<code>", "message": "<text>", ...}``.

``error`` is a stable machine-readable code (clients branch on it); ``message`` is for people and may
change. Handlers raise :class:`ApiError`; aiohttp's own errors (unknown route, wrong method, body too
large, malformed request) are converted by the middleware in :mod:`processors.api.app` and by the
connection handler in :mod:`processors.api.server`, so no answer of this API is HTML or plain text.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from processors.errors import PatchgateError

# the code of an aiohttp error status; a status not listed gets its reason phrase in snake case
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(PatchgateError):
    """An error answer: HTTP status, stable code, human message and extra JSON fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def status_code(status: int, reason: str | None = None) -> str:
    """The stable ``error`` code of an HTTP error status."""
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    words = re.sub(r"[^a-z0-9]+", "_", (reason or "").lower()).strip("_")
    return words or f"http_{status}"


def error_body(code: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": code, "message": message, **extra})


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="patchgate"'} if status == 401 else None
    return web.Response(body=error_body(code, message, **extra), status=status, content_type="application/json",
                        headers=headers)
