"""Terminal output: logs and progress on stderr, result tables on stdout (pipes stay clean).

On a terminal, output fits its width. Off one (a file, a pipe, a test runner), nothing is cut or
wrapped: tables are printed whole and log lines stay one line each, whatever COLUMNS says (rich
would otherwise fall back to 80 columns, or to the width of whichever stream is a terminal).
"""

from __future__ import annotations

import logging
import os

from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

UNLIMITED = 1_000_000  # columns off a terminal: wider than any table or log line


class _Console(Console):
    """A rich console that is as wide as its terminal, and unlimited when it writes to no terminal.

    Decided at each print, so a console made at import time follows later redirections.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self._width is None and not self.is_terminal and not self.is_jupyter:
            return ConsoleDimensions(UNLIMITED, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


err = _Console(stderr=True, highlight=False)
out = _Console(highlight=False)


def log(message: str) -> None:
    err.print(message, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


class _DoneColumn(ProgressColumn):
    """Steps done out of the total (``3/10``); a percentage for a task added with ``percent=True``
    (a total in bytes, say, where the count itself tells little)."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.percent = MofNCompleteColumn(), TaskProgressColumn()

    def render(self, task: Task) -> Text:
        return (self.percent if task.fields.get("percent") else self.count).render(task)


def progress(*extra_columns, transient: bool = False) -> Progress:
    """A rich progress bar on stderr (hidden when stderr is not a terminal unless forced).

    Tasks carry an ``info`` field (text after the bar); ``percent=True`` shows a percentage
    instead of ``done/total``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _DoneColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=transient,
        disable=os.environ.get("NERKD_NO_PROGRESS") == "1",
    )


def is_main_rank() -> bool:
    """Rank 0 under torchrun (read from the environment: no torch import)."""
    return os.environ.get("RANK", "0") in ("", "0")


class _Handler(logging.Handler):
    """Engine log lines (logger ``nerkd``) on stderr: one line each, warnings marked, no markup parsed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = Text(record.getMessage())
            if record.levelno >= logging.WARNING:
                text = Text.assemble(("warning: ", "yellow"), text)
            err.print(text, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_installed: list[bool] = []


def install() -> None:
    """Route the engines' log lines and progress (:mod:`nerkd.log`) here: rank 0 speaks, others stay quiet."""
    from nerkd import log as engine_log

    logger = engine_log.logger
    for handler in [h for h in logger.handlers if isinstance(h, _Handler | logging.NullHandler)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.INFO)
    main = is_main_rank()
    logger.addHandler(_Handler() if main else logging.NullHandler())
    engine_log.set_progress_factory(progress if main else None)
    _installed.append(True)
