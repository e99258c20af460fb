"""The one place that maps known errors to a one-line message and exit code 1.

Tracebacks are kept for ``--debug`` or ``NERKD_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable

import typer

from nerkd.errors import NerkdError, os_reason

_state = {"debug": False}


def set_debug(flag: bool) -> None:
    _state["debug"] = flag


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("NERKD_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = 1) -> typer.Exit:
    from nerkd.ui import err

    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def known_errors(fn: Callable) -> Callable:
    """Decorator for commands: known errors become one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except NerkdError as e:
            if debug_enabled():
                raise
            raise _fail(_escape(str(e))) from None
        except KeyboardInterrupt as e:
            from nerkd.rundir import RunInterrupted

            # a run says whether a checkpoint was saved and how to resume from it
            raise _fail(_escape(str(e)) if isinstance(e, RunInterrupted) else "interrupted", 130) from None
        except Exception as e:  # noqa: BLE001 - mapped below or re-raised
            if debug_enabled():
                raise
            message = _known_external(e)
            if message is None:
                raise
            raise _fail(_escape(message)) from None

    return wrapper


@contextlib.contextmanager
def one_line_errors():
    """As :func:`known_errors`, around code that runs outside a command (an option's callback)."""
    try:
        yield
    except NerkdError as e:
        if debug_enabled():
            raise
        raise _fail(_escape(str(e))) from None


def setting_hint(option: str, args: list[str], command: str | None) -> str:
    """For an option the command does not have: `` (a setting? --set train.epochs=3)`` when a setting has its
    name (the value taken from ``args``: ``--epochs 3`` or ``--epochs=3``); empty otherwise."""
    from nerkd.settings import setting_type, settings_named

    names = settings_named(option, command)
    if not names:
        return ""
    value = "true" if setting_type(names[0]) is bool else "VALUE"
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
    others = f" (or {', '.join(names[1:3])})" if len(names) > 1 else ""
    return f". It is a setting: --set {names[0]}={value}{others}"


# Without a file name, only these are worth one line (the machine's state, not a bug).
_OS_NAMELESS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def os_error_message(e: OSError) -> str | None:
    """One line ``<path>: <reason>`` for a file-system error, or None when it names no file and is
    not a full or read-only disk (then it is left as a bug, with its traceback)."""
    if e.filename is not None:
        where = os.fsdecode(e.filename)
        if e.filename2 is not None:
            where += f" -> {os.fsdecode(e.filename2)}"
        return f"{where}: {os_reason(e)}"
    if e.errno in _OS_NAMELESS:
        return os_reason(e)
    return None


def _known_external(e: Exception) -> str | None:
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory: lower train.batch_size or data.max_tokens_per_batch"
    if isinstance(e, BrokenPipeError):
        return "output pipe closed"
    if isinstance(e, OSError):
        return os_error_message(e)
    return None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
