"""uvicorn's server with a drain before its graceful shutdown.

On the first SIGTERM or Ctrl-C, uvicorn would close its listening socket and every idle keep-alive
connection at once: a client sending on such a connection at that moment gets no HTTP answer. Here the
first signal only starts a drain (``ServeState.draining``): the port stays open, new requests are answered
503 with ``Retry-After`` and ``Connection: close`` (:class:`nerkd.serve.guard.RequestGuard`), and the
requests already accepted, queued in the micro-batcher included, are answered. Once none is left (or after
``serve.drain_timeout_s``), uvicorn's own graceful shutdown runs (the lifespan's shutdown then closes the
batcher). A second signal skips the rest of the drain; a second Ctrl-C is uvicorn's forced exit.
"""

from __future__ import annotations

import logging
import time

import uvicorn

from nerkd.serve.state import ServeState

log = logging.getLogger("nerkd.serve")


class DrainingServer(uvicorn.Server):
    """A ``uvicorn.Server`` that drains first (see the module doc); ``state`` is the app's
    (``app.state.nerkd``)."""

    def __init__(self, config: uvicorn.Config, state: ServeState, drain_timeout_s: float = 30.0):
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        if self.drain_started is not None or self.should_exit or not self.started:
            return super().handle_exit(sig, frame)    # a second signal, or nothing served yet: uvicorn's way
        self._captured_signals.append(sig)            # re-raised after the shutdown, as uvicorn does
        self.start_drain()

    def start_drain(self) -> None:
        """What the first signal does (also callable from another thread: it only sets flags)."""
        self.drain_started = time.monotonic()
        self.state.draining = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self.drain_started
            if self.state.idle():
                log.info("serve: drained in %.1f s; stopping", waited)
                self.should_exit = True
            elif waited > self.drain_timeout_s:
                log.warning("serve: %d requests still in flight after %.0f s (serve.drain_timeout_s); stopping",
                            self.state.in_flight, self.drain_timeout_s)
                self.should_exit = True
            elif counter % 10 == 0:
                log.info("serve: shutting down: answering the %d requests in flight first (new ones get 503)",
                         self.state.in_flight)
        return await super().on_tick(counter)
