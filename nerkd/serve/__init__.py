"""``nerkd serve``: a FastAPI app (served by uvicorn) around the inference engine, with micro-batching.

Nothing here imports FastAPI at import time: :func:`require_extra` checks the optional
``serve`` extra first and raises a one-line :class:`MissingExtraError` naming the pip command.
"""

from __future__ import annotations

import importlib

from nerkd.errors import NerkdError

INSTALL = "pip install 'nerkd[serve]'"


class MissingExtraError(NerkdError):
    """An optional dependency group is not installed (the message names the pip command)."""


def require_extra() -> None:
    """Raise :class:`MissingExtraError` unless fastapi and uvicorn can be imported."""
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"nerkd serve needs the serve extra ({', '.join(missing)} missing): {INSTALL}")
