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
- ``POST /v1/redact``: the body of ``/v1/entities`` (plus ``mode``, ``bias``) -> the texts pseudonymised as
  ``nerkd redact`` writes them, without the mapping (:mod:`nerkd.serve.redact`).
- ``GET /``: a one-page UI calling the two POST endpoints (:mod:`nerkd.serve.page`).

Every error is JSON ``{"error": "...", "request_id": "..."}`` (the id is also in the
``X-Request-ID`` header, taken from the request's own header when it is a short plain token):
400 invalid JSON, 401 missing or wrong bearer token, 413 body, text count or text length over
the limits, 415 a body not sent as JSON (``Content-Type``), 422 wrong shape or types, 503 not
ready / busy / shutting down, 500 ``internal error`` (logged on stderr with the request id; the
exception's message is withheld from the log, since it may quote the text). Request bodies are never logged.

The model loads in a background thread started by the app's lifespan, so the port answers (503)
while it loads; the lifespan's shutdown closes the batcher, which first runs every queued request.

This module only wires the app: request and response models and limits in :mod:`nerkd.serve.schema`,
JSON errors in :mod:`nerkd.serve.errors`, the request-id / body-limit / 500 middleware in
:mod:`nerkd.serve.guard`, loading and shutdown in :mod:`nerkd.serve.state`, endpoints in
:mod:`nerkd.serve.routes`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from nerkd import __version__
from nerkd.serve.errors import add_error_handlers
from nerkd.serve.guard import RequestGuard, hide_query_strings
from nerkd.serve.page import add_page_route
from nerkd.serve.redact import Redactors, add_redact_route
from nerkd.serve.routes import add_entities_route, add_health_route, add_model_route, add_stats_route, bearer_check
from nerkd.serve.state import ServeState, lifespan_of, load_into
from nerkd.settings import RedactSettings, ServeSettings

__all__ = ["ServeState", "create_app", "resolve_token"]


def create_app(load: Callable[[], Any], settings: ServeSettings | None = None, *, token: str | None = None,
               describe: Callable[[Any], dict] | None = None,
               on_load_error: Callable[[BaseException], None] | None = None, redact: RedactSettings | None = None,
               key: bytes | None = None) -> FastAPI:
    """The app. ``load()`` returns an engine (anything with ``predict(texts) -> entities per text``
    and a ``space``); it runs in a background thread at startup. ``describe(engine)`` gives the
    ``/v1/model`` JSON. ``token``: the bearer token required on ``/v1/*`` (``None``: no auth). A
    failed load is handed to ``on_load_error`` (the CLI stops the server), else logged. ``redact``: the settings
    of ``/v1/redact`` and the page's defaults (default: :class:`~nerkd.settings.RedactSettings`' defaults);
    ``key``: its secret key (``redact.key_file``'s bytes), or None."""
    redact = redact or RedactSettings()
    st = settings or ServeSettings()
    state = ServeState()
    start_loading = functools.partial(load_into, state, load, st, describe, on_load_error)
    app = FastAPI(
        title="nerkd", version=__version__, lifespan=lifespan_of(state, start_loading),
        description="French named entities with exact character offsets, from a nerkd model "
                    "(the same entities as `nerkd infer`).")
    app.state.nerkd = state
    app.add_middleware(RequestGuard, max_body_bytes=st.max_body_bytes, state=state)
    hide_query_strings()   # uvicorn's access log: paths only
    add_error_handlers(app)
    authorized = bearer_check(token)
    add_health_route(app, state)
    add_model_route(app, state, st, authorized)
    add_stats_route(app, state, authorized)
    add_entities_route(app, state, st, authorized)
    add_redact_route(app, state, st, Redactors(redact, key), authorized)
    add_page_route(app, auth=token is not None, settings=redact)
    return app


def resolve_token(settings: ServeSettings, environ: dict[str, str] | None = None) -> str | None:
    """``serve.token`` (config, ``--set`` or ``NERKD_SERVE__TOKEN``), else ``NERKD_SERVE_TOKEN``; empty: none."""
    import os

    env = os.environ if environ is None else environ
    if settings.token is not None and settings.token.get_secret_value():
        return settings.token.get_secret_value()
    return env.get("NERKD_SERVE_TOKEN") or None
