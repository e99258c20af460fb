"""Terminal output: logs and progress on stderr, result tables on stdout (pipes stay clean)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def log(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def progress(*extra_columns, transient: bool = False) -> Progress:
    """A rich progress bar on stderr (hidden when stderr is not a terminal unless forced)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=transient,
        disable=os.environ.get("NERKD_NO_PROGRESS") == "1",
    )
