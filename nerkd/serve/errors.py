"""The JSON errors of ``nerkd serve``: ``{"error": "...", "request_id": "..."}`` for every failure.

:class:`ApiError` is what the endpoints raise; :func:`add_error_handlers` turns it, FastAPI's validation
errors (400 invalid JSON, 415 not sent as JSON, 422 wrong shape) and Starlette's HTTP errors (404, 405,
413 from the body limit) into that body. :func:`safe_traceback` is what the log gets for a server error.
"""

from __future__ import annotations

import traceback
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def request_id(request: Request) -> str:
    """The id the guard middleware gave the request (a fresh one if it has none)."""
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def json_response(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> Response:
    return json_response(status, {"error": message, "request_id": request_id(request), **extra}, headers)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict]) -> tuple[int, str, list[dict]]:
    """(status, message, details) of FastAPI's validation errors: 400 for invalid JSON, else 422."""
    first = errors[0] if errors else {"type": "", "msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        pos = first.get("loc", (None, None))[-1]
        return 400, f"invalid JSON: {reason}" + (f" (at byte {pos})" if isinstance(pos, int) else ""), []
    details = [{"loc": _where(tuple(e.get("loc", ()))),
                "msg": str(e.get("msg", "")).removeprefix("Value error, ")} for e in errors]
    if not details or (len(details) == 1 and details[0]["loc"] == "body" and first.get("type") == "missing"):
        return 422, "missing JSON body: send {\"text\": ...} or {\"texts\": [...]}", details
    more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
    return 422, f"{details[0]['loc']}: {details[0]['msg']}{more}", details


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, as FastAPI decides whether to parse the body."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def safe_traceback(exc: BaseException) -> str:
    """The traceback's frames and the exception's type, without its message (which may quote a text)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"Traceback (most recent call last):\n{frames}{type(exc).__module__}.{type(exc).__qualname__} " \
           f"(message withheld: it may quote the request)"


async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(request, exc.status, exc.message, exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    status, message, details = validation_message(list(exc.errors()))
    if status == 422 and request.method == "POST" and not is_json(request.headers.get("content-type")):
        return error_response(request, 415, "send the body as JSON with the header Content-Type: application/json "
                                             "(curl: -H 'Content-Type: application/json')")
    return error_response(request, status, message, **({"details": details} if details else {}))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else "request error"
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):   # FastAPI's body parsing
        message = f"invalid JSON: not valid UTF-8 ({exc.__cause__.reason} at byte {exc.__cause__.start})"
    return error_response(request, exc.status_code, message, getattr(exc, "headers", None))


def add_error_handlers(app: FastAPI) -> None:
    """Every error the app answers (raised by an endpoint, by validation or by routing) as a JSON body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
