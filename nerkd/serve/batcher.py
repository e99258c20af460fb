"""Micro-batching: concurrent requests share one ``engine.predict`` call, each gets its own results.

Requests are queued as jobs (a list of texts and a :class:`concurrent.futures.Future`). One worker
thread takes the oldest job, then keeps taking jobs while they fit in ``max_batch_words``
(whitespace-separated words) and ``max_wait_ms`` has not passed since it took the first one (it
waits only when its previous batch held more than one request: a lone client pays no wait); it
runs ``predict`` once over all their texts and hands job *k* exactly the slice of results of
its own texts, in order. A job larger than the budget runs alone. A job may carry a ``key`` (``/v1/redact``'s
decoding bias): only jobs with equal keys share a batch, and ``predict(texts, key)`` gets it (``predict(texts)``
for the default key ``None``). A failed batch is retried job
by job, so one bad request cannot fail the others. A job whose client went away (its future was
cancelled while queued) is skipped. :meth:`MicroBatcher.close` refuses new jobs, lets the worker
finish every queued one (graceful shutdown) and joins it.

No FastAPI here: plain threads, usable and testable on its own.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

log = logging.getLogger("nerkd.serve")


class QueueClosed(RuntimeError):
    """The server is shutting down: no new jobs."""


class QueueFull(RuntimeError):
    """Too many texts are waiting (``serve.max_queue_texts``)."""


def count_words(text: str) -> int:
    """The batching budget's unit: whitespace-separated words (cheap; the engine splits French words later)."""
    return len(text.split())


@dataclass
class BatchStats:
    requests: int = 0
    texts: int = 0
    words: int = 0
    batches: int = 0
    failed: int = 0
    cancelled: int = 0
    largest: int = 0          # most requests in one batch

    def summary(self) -> str:
        mean = self.requests / self.batches if self.batches else 0.0
        return (f"{_n(self.requests, 'request')}, {_n(self.texts, 'text')}, {_n(self.words, 'word')} in "
                f"{_n(self.batches, 'batch', 'batches')} "
                f"(mean {mean:.1f} requests per batch, largest {self.largest}); {self.failed} failed, "
                f"{self.cancelled} cancelled by their clients")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


@dataclass
class _Job:
    texts: Sequence[str]
    words: int
    future: Future = field(default_factory=Future)
    key: object = None


class MicroBatcher:
    """See module doc. ``predict(texts) -> one result per text`` runs on the worker thread only."""

    def __init__(self, predict: Callable[[list[str]], list], *, max_batch_words: int = 4096,
                 max_wait_ms: float = 5.0, max_queue_texts: int | None = None, name: str = "nerkd-batcher"):
        if max_batch_words < 1:
            raise ValueError("max_batch_words must be >= 1")
        self._predict = predict
        self.max_batch_words = max_batch_words
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queue_texts = max_queue_texts
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stats = BatchStats()
        self._last_batch = 0      # requests in the previous batch: wait for company only after a shared one
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- client side ---------------------------------------------------------------------
    def submit(self, texts: Sequence[str], key: object = None) -> Future:
        """Queue ``texts``; the future's result is the list of their results, in order. ``key``: see the module doc."""
        job = _Job(list(texts), sum(count_words(t) for t in texts), key=key)
        with self._cond:
            if self._closed:
                raise QueueClosed("the server is shutting down")
            if self.max_queue_texts is not None and self._queued_texts + len(job.texts) > self.max_queue_texts \
                    and self._queue:
                raise QueueFull(f"{self._queued_texts} texts already waiting (serve.max_queue_texts)")
            self._queue.append(job)
            self._queued_texts += len(job.texts)
            self._cond.notify()
        return job.future

    @property
    def queued(self) -> int:
        """Texts waiting (not yet taken by the worker)."""
        with self._cond:
            return self._queued_texts

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, let the worker run every queued job, wait for it; ``False`` on timeout."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker side ---------------------------------------------------------------------
    def _take(self) -> _Job | None:
        """Pop the next live job (``None`` when closed and empty); call with the lock held."""
        while True:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            job = self._queue.popleft()
            self._queued_texts -= len(job.texts)
            if job.future.set_running_or_notify_cancel():
                return job
            self.stats.cancelled += 1

    def _gather(self) -> list[_Job] | None:
        with self._cond:
            first = self._take()
            if first is None:
                return None
            batch, words = [first], first.words
            deadline = time.monotonic() + (self.max_wait if self._last_batch > 1 else 0.0)
            while words < self.max_batch_words:
                if self._queue:
                    nxt = self._queue[0]
                    if words + nxt.words > self.max_batch_words or nxt.key != first.key:
                        break   # it starts the next batch
                    self._queue.popleft()
                    self._queued_texts -= len(nxt.texts)
                    if nxt.future.set_running_or_notify_cancel():
                        batch.append(nxt)
                        words += nxt.words
                    else:
                        self.stats.cancelled += 1
                    continue
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._last_batch = len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            key = batch[0].key
            results = (self._predict(texts) if key is None else self._predict(texts, key)) if texts else []
            if len(results) != len(texts):
                raise RuntimeError(f"predict returned {len(results)} results for {len(texts)} texts")
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) > 1:   # find the job that fails; the others still get their answers
                for job in batch:
                    self._process([job])
                return
            self.stats.failed += 1
            batch[0].future.set_exception(e)
            return
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(batch))
        at = 0
        for job in batch:
            n = len(job.texts)
            self.stats.requests += 1
            self.stats.texts += n
            self.stats.words += job.words
            job.future.set_result(results[at: at + n])
            at += n
