"""``nerkd serve``: a FastAPI app (served by uvicorn) around the inference engine, with micro-batching.

Nothing here imports FastAPI at import time: :func:`require_extra` checks the optional
``serve`` extra first and raises a one-line :class:`MissingExtraError` naming the pip command.
"""

from __future__ import annotations

from nerkd.errors import MissingExtraError
from nerkd.errors import require_extra as _require

INSTALL = "pip install 'nerkd[serve]'"
__all__ = ["INSTALL", "MissingExtraError", "require_extra"]


def require_extra() -> None:
    """Raise :class:`MissingExtraError` unless fastapi and uvicorn can be imported."""
    _require("serve", "nerkd serve", ("fastapi", "uvicorn"))
