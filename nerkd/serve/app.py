"""The FastAPI app of ``nerkd serve``.

Endpoints (OpenAPI docs at ``/docs``, schema at ``/openapi.json``):

- ``POST /v1/entities``: ``{"text": "..."}`` -> ``{"entities": [...]}``, or
  ``{"texts": [...], "ids"?: [...]}`` -> ``{"results": [{"id"?, "entities": [...]}, ...]}`` in input
  order. Entities are exactly those of ``nerkd infer`` (``{"start", "end", "label", "text", "score"}``,
  character offsets into the text, long texts windowed). Requests are micro-batched
  (:mod:`nerkd.serve.batcher`).
- ``GET /health``: 200 ``{"status": "ok"}`` once the model is loaded, 503 before (``loading``), after
  a failed load (``error``) and while shutting down.
- ``GET /v1/model``: labels, parameters, nerkd version, the weights' sha256 (:mod:`nerkd.serve.info`).
- ``GET /v1/stats``: requests, texts, words and batches served, texts waiting (for monitoring).

Every error is JSON ``{"error": "...", "request_id": "..."}`` (the id is also in the
``X-Request-ID`` header, taken from the request's own header when it is a short plain token):
400 invalid JSON, 401 missing or wrong bearer token, 413 body, text count or text length over
the limits, 415 a body not sent as JSON (``Content-Type``), 422 wrong shape or types, 503 not
ready / busy / shutting down, 500 ``internal error`` (logged on stderr with the request id; the
exception's message is withheld from the log, since it may quote the text). Request bodies are never logged.

The model loads in a background thread started by the app's lifespan, so the port answers (503)
while it loads; the lifespan's shutdown closes the batcher, which first runs every queued request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from nerkd import __version__
from nerkd.serve.batcher import MicroBatcher, QueueClosed, QueueFull
from nerkd.settings import ServeSettings

log = logging.getLogger("nerkd.serve")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# -- request and response models (the OpenAPI schema) --------------------------------------
class EntitiesRequest(BaseModel):
    """One text, or a list of texts with optional ids (returned with their results)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Mme Lefèvre a quitté le CHU de Lyon."},
        {"texts": ["Mme Lefèvre a quitté le CHU de Lyon.", "RAS."], "ids": ["note-1", "note-2"]},
    ]})

    text: str | None = Field(None, description="one text (answer: {\"entities\": [...]})")
    texts: list[str] | None = Field(None, description="several texts (answer: {\"results\": [...]}, same order)")
    ids: list[str | int] | None = Field(None, description="one id per text of `texts`, echoed in its result")

    @model_validator(mode="after")
    def _one_form(self) -> EntitiesRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give either "text" or "texts"')
        if self.ids is not None:
            if self.texts is None:
                raise ValueError('"ids" goes with "texts"')
            if len(self.ids) != len(self.texts):
                raise ValueError(f'{len(self.ids)} ids for {len(self.texts)} texts')
        return self


class Entity(BaseModel):
    start: int = Field(description="character offset of the first character (text[start:end] == entity text)")
    end: int = Field(description="character offset after the last character")
    label: str = Field(description="entity type, e.g. PER, LOC, ORG")
    text: str
    score: float = Field(description="mean (or min, with infer's --score min) probability of its words' tags")


class EntitiesResponse(BaseModel):
    entities: list[Entity]


class TextResult(BaseModel):
    id: str | int | None = Field(None, description="the request's id for this text (absent without ids)")
    entities: list[Entity]


class BatchResponse(BaseModel):
    results: list[TextResult]


class ErrorBody(BaseModel):
    error: str
    request_id: str
    details: list[dict[str, Any]] | None = Field(None, description="422 only: where the request is wrong")


class Health(BaseModel):
    status: str = Field(description="ok, loading, error or shutting down")


ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 500, 503)}


# -- errors ----------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _rid(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> Response:
    return _json(status, {"error": message, "request_id": _rid(request), **extra}, headers)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _validation_message(errors: list[dict]) -> tuple[int, str, list[dict]]:
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


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, as FastAPI decides whether to parse the body."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def safe_traceback(exc: BaseException) -> str:
    """The traceback's frames and the exception's type, without its message (which may quote a text)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"Traceback (most recent call last):\n{frames}{type(exc).__module__}.{type(exc).__qualname__} " \
           f"(message withheld: it may quote the request)"


class _Guard:
    """Pure ASGI middleware: request ids, the body-size limit, and the catch-all for unexpected errors."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
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

        try:
            await self.app(scope, receive_limited, send_with_id)
        except Exception as e:  # noqa: BLE001 - the client gets a JSON 500, the log the traceback
            log.error("request %s %s %s failed: internal error\n%s", rid, scope.get("method"), scope.get("path"),
                      safe_traceback(e))
            if not started:
                await reply(500, {"error": "internal error"})


# -- the app -----------------------------------------------------------------------------------
class ServeState:
    """What the endpoints share: the engine, its batcher and the model's description, once loaded."""

    def __init__(self):
        self.engine = None
        self.batcher: MicroBatcher | None = None
        self.info: dict = {}
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.stopping = False
        self.load_seconds = 0.0
        self.loaded_at = 0.0


def create_app(load: Callable[[], Any], settings: ServeSettings | None = None, *, token: str | None = None,
               describe: Callable[[Any], dict] | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app. ``load()`` returns an engine (anything with ``predict(texts) -> entities per text``
    and a ``space``); it runs in a background thread at startup. ``describe(engine)`` gives the
    ``/v1/model`` JSON. ``token``: the bearer token required on ``/v1/*`` (``None``: no auth). A
    failed load is handed to ``on_load_error`` (the CLI stops the server), else logged."""
    st = settings or ServeSettings()
    state = ServeState()

    def load_in_background() -> None:
        start = time.perf_counter()
        try:
            engine = load()
            info = describe(engine) if describe is not None else {}
            state.batcher = MicroBatcher(engine.predict, max_batch_words=st.max_batch_words,
                                         max_wait_ms=st.max_wait_ms, max_queue_texts=st.max_queue_texts)
            state.engine, state.info = engine, info
            state.loaded_at = time.perf_counter()
            state.load_seconds = state.loaded_at - start
            state.ready.set()
            runtime = ", ".join(str(x) for x in (info.get("backend"), info.get("device"), info.get("precision"))
                                if x)
            log.info("serve: model loaded in %.1f s%s; ready", state.load_seconds, f" ({runtime})" if runtime else "")
        except BaseException as e:  # noqa: BLE001 - reported, /health says error
            state.error = e
            if on_load_error is not None:
                on_load_error(e)
            else:
                log.error("serve: the model failed to load: %s", e)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load_in_background, name="nerkd-load", daemon=True)
        loader.start()
        try:
            yield
        finally:
            state.stopping = True
            if state.batcher is not None:   # uvicorn has let open requests finish; run anything still queued
                queued = state.batcher.queued
                if queued:
                    log.info("serve: shutting down, running the %d queued texts first", queued)
                await asyncio.to_thread(state.batcher.close)
                log.info("serve: served %s", state.batcher.stats.summary())

    app = FastAPI(
        title="nerkd", version=__version__, lifespan=lifespan,
        description="French named entities with exact character offsets, from a nerkd model "
                    "(the same entities as `nerkd infer`).")
    app.state.nerkd = state
    app.add_middleware(_Guard, max_body_bytes=st.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _error(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        status, message, details = _validation_message(list(exc.errors()))
        if status == 422 and request.method == "POST" and not _is_json(request.headers.get("content-type")):
            return _error(request, 415, "send the body as JSON with the header Content-Type: application/json "
                                        "(curl: -H 'Content-Type: application/json')")
        return _error(request, status, message, **({"details": details} if details else {}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request error"
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):   # FastAPI's body parsing
            message = f"invalid JSON: not valid UTF-8 ({exc.__cause__.reason} at byte {exc.__cause__.start})"
        return _error(request, exc.status_code, message, getattr(exc, "headers", None))

    bearer = HTTPBearer(auto_error=False, description="the server's token (serve.token or NERKD_SERVE_TOKEN)")

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})

    def ready_batcher() -> MicroBatcher:
        if state.stopping:
            raise ApiError(503, "the server is shutting down")
        if state.error is not None:
            raise ApiError(503, "the model failed to load")
        if not state.ready.is_set() or state.batcher is None:
            raise ApiError(503, "the model is loading", {"Retry-After": "1"})
        return state.batcher

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    async def health() -> Response:
        """200 once the model is loaded and the server takes requests; 503 otherwise."""
        if state.stopping:
            return _json(503, {"status": "shutting down"})
        if state.error is not None:
            return _json(503, {"status": "error"})
        if not state.ready.is_set():
            return _json(503, {"status": "loading"})
        return _json(200, {"status": "ok"})

    @app.get("/v1/model", responses=ERRORS, dependencies=[Depends(authorized)], tags=["model"])
    async def model_description() -> Response:
        """Labels, entity types, parameters, nerkd version, the weights' sha256, runtime and limits."""
        ready_batcher()
        return _json(200, {**state.info, "limits": {
            "max_body_bytes": st.max_body_bytes, "max_texts": st.max_texts, "max_chars": st.max_chars},
            "batching": {"max_batch_words": st.max_batch_words, "max_wait_ms": st.max_wait_ms}})

    @app.get("/v1/stats", responses=ERRORS, dependencies=[Depends(authorized)], tags=["service"])
    async def batching_stats() -> Response:
        """Counters since the model loaded: requests, texts, words and batches served (mean requests per batch),
        failed and cancelled requests, texts waiting now."""
        batcher = ready_batcher()
        stats = dataclasses.asdict(batcher.stats)
        stats["mean_requests_per_batch"] = round(stats["requests"] / stats["batches"], 2) if stats["batches"] else 0.0
        return _json(200, {**stats, "queued_texts": batcher.queued,
                           "uptime_s": round(time.perf_counter() - state.loaded_at, 1)})

    @app.post("/v1/entities", response_model=EntitiesResponse | BatchResponse, responses=ERRORS,
              dependencies=[Depends(authorized)], tags=["entities"])
    async def entities(body: EntitiesRequest) -> Response:
        """Entities of one text (`{"text"}` -> `{"entities"}`) or of several (`{"texts", "ids"?}` -> `{"results"}`),
        exactly as `nerkd infer` writes them."""
        single = body.text is not None
        texts = [body.text] if single else body.texts
        if len(texts) > st.max_texts:
            raise ApiError(413, f"{len(texts)} texts in one request, over the limit of {st.max_texts} "
                                f"(serve.max_texts)")
        for i, text in enumerate(texts):
            if len(text) > st.max_chars:
                raise ApiError(413, f"{'text' if single else f'texts.{i}'}: {len(text)} characters, over the "
                                    f"limit of {st.max_chars} (serve.max_chars)")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(422, f"{'text' if single else f'texts.{i}'}: not valid Unicode "
                                    f"(an unpaired surrogate)") from None
        batcher = ready_batcher()
        if texts:
            try:
                future = batcher.submit(texts)
            except QueueClosed:
                raise ApiError(503, "the server is shutting down") from None
            except QueueFull:
                raise ApiError(503, "the server is busy: retry shortly", {"Retry-After": "1"}) from None
            results = await asyncio.wrap_future(future)
        else:
            results = []
        if single:
            return _json(200, {"entities": results[0]})
        ids = body.ids
        out = [{"id": ids[i], "entities": ents} if ids is not None else {"entities": ents}
               for i, ents in enumerate(results)]
        return _json(200, {"results": out})

    return app


def resolve_token(settings: ServeSettings, environ: dict[str, str] | None = None) -> str | None:
    """``serve.token`` (config, ``--set`` or ``NERKD_SERVE__TOKEN``), else ``NERKD_SERVE_TOKEN``; empty: none."""
    import os

    env = os.environ if environ is None else environ
    if settings.token is not None and settings.token.get_secret_value():
        return settings.token.get_secret_value()
    return env.get("NERKD_SERVE_TOKEN") or None
