"""The ASGI middleware around the app of ``nerkd serve``: request ids, the body-size limit, and the
catch-all that turns an unexpected error into a JSON 500 (logged with the request id, never the text)."""

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
    """Pure ASGI middleware: request ids, the body-size limit, and the catch-all for unexpected errors."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

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
            await send(message)

        async def reply(status: int, body: dict) -> None:
            payload = orjson.dumps({**body, "request_id": rid})
            await send_with_id({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send_with_id({"type": "http.response.body", "body": payload})

        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await reply(413, {"error": f"request body of {int(length)} bytes is over the limit of {limit} "
                                              f"bytes (serve.max_body_bytes)"})
        try:
            await self.app(scope, _limited(receive, limit), send_with_id)
        except Exception as e:  # noqa: BLE001 - the client gets a JSON 500, the log the traceback
            log.error("request %s %s %s failed: internal error\n%s", rid, scope.get("method"), scope.get("path"),
                      safe_traceback(e))
            if not started:
                await reply(500, {"error": "internal error"})


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
