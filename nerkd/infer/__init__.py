"""Inference: stream texts through a token classifier and write entities with exact offsets.

:func:`load_engine` is the one place where settings become an :class:`Engine`: ``nerkd infer``, ``serve``,
``bench`` and ``report`` (and any library user) load models through it, and which runtime runs the model is
decided there (:func:`nerkd.infer.backend.choose_backend`: ONNX Runtime for a verified fp32 export of the
model's weights, on a CPU, unless ``infer.backend`` says torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.infer.backend import BackendChoice, choose_backend
from nerkd.infer.engine import Engine, RunStats
from nerkd.infer.io import Doc, chunked, detect_format, detokenize, read_docs, result_line
from nerkd.infer.spans import entities_of
from nerkd.log import say

if TYPE_CHECKING:
    from nerkd.settings import InferSettings

__all__ = ["BackendChoice", "Doc", "Engine", "RunStats", "choose_backend", "chunked", "detect_format", "detokenize",
           "entities_of", "load_engine", "read_docs", "result_line"]


def load_engine(model: str | Path, settings: InferSettings, *, max_length: int, stride: int, score: str = "mean",
                choice: BackendChoice | None = None, **load_kwargs) -> Engine:
    """``model`` ready to tag, as ``settings`` (the ``infer`` section, with a command's overrides) say;
    ``max_length``/``stride``: ``data.*``; ``load_kwargs``: ``revision`` and ``trust_remote_code`` of a hub
    model (:meth:`Engine.load`). The runtime is ``choice``, else :func:`choose_backend`'s, whose line is said
    first (a caller that passes ``choice`` has said it)."""
    if choice is None:
        choice = choose_backend(model, settings)
        if choice.line:
            say(choice.line)
    return Engine.load(choice.ref, device=settings.device, precision=settings.precision, int8=settings.int8,
                       batch_size=settings.batch_size, max_length=max_length, stride=stride,
                       max_tokens=settings.max_tokens, score=score, tokenize=settings.tokenize,
                       compile=settings.compile, jit=settings.jit, backend=choice.backend, **load_kwargs)
