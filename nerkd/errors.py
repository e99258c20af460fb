"""Known, user-facing errors.

Engine code raises these; the CLI (``nerkd.cli.errors``) is the one place that maps them
to a one-line message on stderr and exit code 1. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
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


_OS_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
}


def os_reason(e: OSError) -> str:
    """A short, lower-case reason for a file-system error ("permission denied", ...)."""
    return _OS_REASONS.get(e.errno, (e.strerror or type(e).__name__).lower())


class MissingExtraError(NerkdError):
    """An optional dependency group is not installed (the message names the pip command)."""


def require_extra(extra: str, what: str, modules: tuple[str, ...]) -> None:
    """Raise :class:`MissingExtraError` (one line naming ``pip install 'nerkd[<extra>]'``) unless every
    module of ``modules`` imports."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"{what} needs the {extra} extra ({', '.join(missing)} missing): "
                                f"pip install 'nerkd[{extra}]'")
