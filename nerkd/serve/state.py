"""The life of a ``nerkd serve`` app: the model loaded in a background thread, the micro-batcher the
endpoints share, and the lifespan that starts the load and, at shutdown, runs every queued request."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from nerkd.serve.batcher import MicroBatcher
from nerkd.serve.errors import ApiError
from nerkd.settings import ServeSettings

log = logging.getLogger("nerkd.serve")


class ServeState:
    """What the endpoints share: the engine, its batcher and the model's description, once loaded."""

    def __init__(self):
        self.engine = None
        self.batcher: MicroBatcher | None = None
        self.info: dict = {}
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.stopping = False
        self.draining = False     # SIGTERM or Ctrl-C: new requests get 503 while those held finish
        self.in_flight = 0        # requests accepted and not yet answered (the guard counts them)
        self.load_seconds = 0.0
        self.loaded_at = 0.0

    def status(self) -> str:
        """``ok``, ``loading``, ``error`` or ``shutting down`` (what ``GET /health`` says)."""
        if self.stopping or self.draining:
            return "shutting down"
        if self.error is not None:
            return "error"
        return "ok" if self.ready.is_set() else "loading"

    def idle(self) -> bool:
        """No request accepted and unanswered, nothing queued: a draining server may stop."""
        return self.in_flight == 0 and (self.batcher is None or self.batcher.queued == 0)

    def ready_batcher(self) -> MicroBatcher:
        """The batcher, or an :class:`ApiError` 503 saying why there is none to use."""
        if self.stopping:
            raise ApiError(503, "the server is shutting down")
        if self.error is not None:
            raise ApiError(503, "the model failed to load")
        if not self.ready.is_set() or self.batcher is None:
            raise ApiError(503, "the model is loading", {"Retry-After": "1"})
        return self.batcher


def load_into(state: ServeState, load: Callable[[], Any], st: ServeSettings,
              describe: Callable[[Any], dict] | None,
              on_load_error: Callable[[BaseException], None] | None) -> None:
    """Load the engine and start its batcher (the loader thread's work); a failure goes to ``on_load_error``,
    else to the log, and ``/health`` says ``error``."""
    start = time.perf_counter()
    try:
        engine = load()
        info = describe(engine) if describe is not None else {}
        state.batcher = MicroBatcher(predict_of(engine), max_batch_words=st.max_batch_words,
                                     max_wait_ms=st.max_wait_ms, max_queue_texts=st.max_queue_texts)
        state.engine, state.info = engine, info
        state.loaded_at = time.perf_counter()
        state.load_seconds = state.loaded_at - start
        state.ready.set()
        runtime = ", ".join(str(x) for x in (info.get("backend"), info.get("device"), info.get("precision")) if x)
        log.info("serve: model loaded in %.1f s%s; ready", state.load_seconds, f" ({runtime})" if runtime else "")
    except BaseException as e:  # noqa: BLE001 - reported, /health says error
        state.error = e
        if on_load_error is not None:
            on_load_error(e)
        else:
            log.error("serve: the model failed to load: %s", e)


def predict_of(engine) -> Callable:
    """What the batcher runs: ``predict(texts)`` as the engine was loaded (``/v1/entities``: the decoding of
    ``nerkd infer``), ``predict(texts, bias)`` with the engine's ``entity_bias`` set to ``bias`` for that call
    (``/v1/redact``; only the batcher's worker thread calls it, so no other call sees that bias)."""

    def predict(texts, bias=None):
        if bias is None:
            return engine.predict(texts)
        before = engine.entity_bias
        engine.entity_bias = bias
        try:
            return engine.predict(texts)
        finally:
            engine.entity_bias = before

    return predict


async def drain(state: ServeState) -> None:
    """At shutdown (uvicorn has let open requests finish): refuse new ones and run anything still queued."""
    state.stopping = True
    if state.batcher is None:
        return
    queued = state.batcher.queued
    if queued:
        log.info("serve: shutting down, running the %d queued texts first", queued)
    await asyncio.to_thread(state.batcher.close)
    log.info("serve: served %s", state.batcher.stats.summary())


def lifespan_of(state: ServeState, start_loading: Callable[[], None]):
    """The app's lifespan: ``start_loading`` in a daemon thread (the port answers 503 meanwhile), then
    :func:`drain` at shutdown."""

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=start_loading, name="nerkd-load", daemon=True).start()
        try:
            yield
        finally:
            await drain(state)

    return lifespan
