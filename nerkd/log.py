"""How engine code speaks: log lines through stdlib ``logging`` (logger ``"nerkd"``) and progress
through a hook. Engines never print and never import rich.

The CLI installs the handler that writes log lines on stderr, rank 0 only under torchrun, and the
factory that draws progress bars (:func:`nerkd.ui.install`). Without them (a library user, a
test), info lines go nowhere, warnings go to logging's last-resort handler, and progress is silent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger("nerkd")


def say(message: str) -> None:
    """An information line (stderr, rank 0, under the CLI)."""
    logger.info(message)


def warn(message: str) -> None:
    """A warning line: shown as ``warning: <message>``."""
    logger.warning(message)


class Progress(Protocol):
    """The subset of ``rich.progress.Progress`` engines use: a context manager with tasks."""

    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> bool | None: ...
    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int: ...
    def update(self, task: int, **kwargs: Any) -> None: ...
    def advance(self, task: int, advance: float = 1) -> None: ...


class NullProgress:
    """Progress that shows nothing (the default, and every rank but 0)."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def update(self, task: int, **kwargs: Any) -> None:
        return None

    def advance(self, task: int, advance: float = 1) -> None:
        return None


_factory: Callable[..., Progress] | None = None


def set_progress_factory(factory: Callable[..., Progress] | None) -> None:
    """Install how progress is drawn (the CLI: rich bars on stderr); None: silent."""
    global _factory
    _factory = factory


def progress(*, transient: bool = False) -> Progress:
    """A progress display for a long step (``with progress() as bar: t = bar.add_task(...)``)."""
    return _factory(transient=transient) if _factory is not None else NullProgress()
