"""Terminal output: logs and progress on stderr, result tables on stdout (pipes stay clean).

On a terminal, output fits its width. Off one (a file, a pipe, a test runner), log lines stay one line
each, whatever COLUMNS says (rich would otherwise fall back to 80 columns, or to the width of whichever
stream is a terminal), and tables fit :data:`TABLE_WIDTH` columns (``COLUMNS`` when wider) by wrapping
their cells at spaces. Anywhere, a word of a table or of its title (a path, a number) is never cut: a
column is at least as wide as its longest word, a table as its title's longest word; a table whose words
cannot fit the limit is printed wider, whole.
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
from rich.table import Table
from rich.text import Text

UNLIMITED = 1_000_000  # columns off a terminal: wider than any log line
TABLE_WIDTH = 100      # columns of a table off a terminal, at least


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

    def print(self, *objects, **kwargs) -> None:
        if any(isinstance(o, Table) for o in objects) and kwargs.get("width") is None:
            width = self.table_width()
            for o in objects:
                if isinstance(o, Table):
                    keep_words(self, o)
            if width < self.width:
                kwargs["width"] = width
        super().print(*objects, **kwargs)

    def table_width(self) -> int:
        """The terminal's width; off one, :data:`TABLE_WIDTH` or ``COLUMNS`` when wider."""
        if self._width is not None or self.is_terminal or self.is_jupyter:
            return self.width
        columns = os.environ.get("COLUMNS", "")
        return max(TABLE_WIDTH, int(columns) if columns.isdigit() else 0)


def _longest_word(console: Console, renderable) -> int:
    if isinstance(renderable, str):
        renderable = console.render_str(renderable)
    if not isinstance(renderable, Text):
        return 0
    return max((len(w) for w in renderable.plain.split()), default=0)


def keep_words(console: Console, table: Table) -> None:
    """Wrap ``table``'s cells and title at spaces, never inside a word: each wrapping column at least as wide
    as its longest word, the table at least as wide as its title's longest word."""
    for column in table.columns:
        if not column.no_wrap:
            longest = max((_longest_word(console, c) for c in [column.header, *column.cells]), default=0)
            column.min_width = max(column.min_width or 0, longest)
    if table.title:
        table.min_width = max(table.min_width or 0, _longest_word(console, table.title))


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
