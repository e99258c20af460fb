"""The ASGI middleware around the app of ``nerkd serve``: request ids, the body-size limit, the drain before a
shutdown (503 + ``Retry-After`` to new requests, the count of those in flight), and the catch-all that turns an
unexpected error into a JSON 500 (logged with the request id, never the text). :class:`PathOnly` keeps query
strings out of the access log."""

from __future__ import annotations

import logging
import re
import uuid

import orjson
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from nerkd.serve.errors import safe_traceback

log = logging.getLogger("nerkd.serve")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def scope_request_id(headers: dict[bytes, bytes]) -> str:
    """The request's own ``X-Request-ID`` when it is a short plain token, else a fresh one."""
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class RequestGuard:
    """Pure ASGI middleware: request ids, the body-size limit, the drain, and the catch-all for unexpected errors.

    With ``state`` (the app's :class:`~nerkd.serve.state.ServeState`): requests in flight are counted
    (``state.in_flight``), and while ``state.draining`` a new request (``GET /health`` aside, which says
    ``shutting down``) gets a JSON 503 with ``Retry-After``, and every answer closes its connection, so a
    keep-alive client learns of the shutdown from an HTTP answer, never from a dropped connection."""

    def __init__(self, app, max_body_bytes: int, state=None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        rid = scope_request_id(headers)
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["x-request-id"] = rid
                if self._draining():
                    MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        async def reply(status: int, body: dict, extra: tuple = ()) -> None:
            payload = orjson.dumps({**body, "request_id": rid})
            await send_with_id({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]})
            await send_with_id({"type": "http.response.body", "body": payload})

        if self._draining() and scope.get("path") != "/health":
            return await reply(503, {"error": "the server is shutting down: retry shortly"}, ((b"retry-after", b"1"),))

        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await reply(413, {"error": f"request body of {int(length)} bytes is over the limit of {limit} "
                                              f"bytes (serve.max_body_bytes)"})
        self._count(1)
        try:
            await self.app(scope, _limited(receive, limit), send_with_id)
        except Exception as e:  # noqa: BLE001 - the client gets a JSON 500, the log the traceback
            log.error("request %s %s %s failed: internal error\n%s", rid, scope.get("method"), scope.get("path"),
                      safe_traceback(e))
            if not started:
                await reply(500, {"error": "internal error"})
        finally:
            self._count(-1)

    def _draining(self) -> bool:
        return self.state is not None and self.state.draining

    def _count(self, step: int) -> None:
        if self.state is not None:
            self.state.in_flight += step


class PathOnly(logging.Filter):
    """uvicorn's access log without query strings (``/v1/entities?patient=...`` is logged ``/v1/entities``):
    a query may carry what the request is about. Its records' arguments are (client, method, path with query,
    HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def hide_query_strings(logger_name: str = "uvicorn.access") -> None:
    """Put :class:`PathOnly` on uvicorn's access logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, PathOnly) for f in logger.filters):
        logger.addFilter(PathOnly())


def _limited(receive, limit: int):
    """``receive`` that raises a 413 once the body read so far is over ``limit`` bytes (a chunked body, or
    one longer than its ``Content-Length`` said)."""
    received = 0

    async def receive_limited():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise StarletteHTTPException(413, f"request body over the limit of {limit} bytes "
                                                  f"(serve.max_body_bytes)")
        return message

    return receive_limited
