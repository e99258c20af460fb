"""Known, user-facing errors.

Engine code raises these; the CLI (``nerkd.cli.errors``) is the one place that maps them
to a one-line message on stderr and exit code 1. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path


class NerkdError(Exception):
    """Base class: ``str(err)`` is the whole one-line message shown to the user."""


class SettingsError(NerkdError):
    """A setting is unknown, of the wrong type or out of range (names key and source)."""


class DataError(NerkdError):
    """Bad input data; names the file and, when known, the 1-based line."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ModelLoadError(NerkdError):
    """A model or tokenizer cannot be loaded (offline, wrong id, wrong folder)."""


class TrainingError(NerkdError):
    """Training cannot go on (NaN loss, nothing to resume from, ...)."""
