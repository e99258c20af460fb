"""Inference: stream texts through a token classifier and write entities with exact offsets.

:func:`load_engine` is the one place where settings become an :class:`Engine`: ``nerkd infer``, ``serve``,
``bench`` and ``report`` (and any library user) load models through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.infer.engine import Engine, RunStats
from nerkd.infer.io import Doc, chunked, detect_format, detokenize, read_docs, result_line
from nerkd.infer.spans import entities_of

if TYPE_CHECKING:
    from nerkd.settings import InferSettings

__all__ = ["Doc", "Engine", "RunStats", "chunked", "detect_format", "detokenize", "entities_of", "load_engine",
           "read_docs", "result_line"]


def load_engine(model: str | Path, settings: InferSettings, *, max_length: int, stride: int, score: str = "mean",
                **load_kwargs) -> Engine:
    """``model`` ready to tag, as ``settings`` (the ``infer`` section, with a command's overrides) say;
    ``max_length``/``stride``: ``data.*``; ``load_kwargs``: ``revision`` and ``trust_remote_code`` of a hub
    model (:meth:`Engine.load`)."""
    return Engine.load(model, device=settings.device, precision=settings.precision, int8=settings.int8,
                       batch_size=settings.batch_size, max_length=max_length, stride=stride,
                       max_tokens=settings.max_tokens, score=score, tokenize=settings.tokenize,
                       compile=settings.compile, backend=settings.backend, **load_kwargs)
