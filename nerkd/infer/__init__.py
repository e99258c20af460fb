"""Inference: stream texts through a token classifier and write entities with exact offsets."""

from nerkd.infer.engine import Engine, RunStats
from nerkd.infer.io import Doc, chunked, detect_format, detokenize, read_docs, result_line
from nerkd.infer.spans import entities_of

__all__ = ["Doc", "Engine", "RunStats", "chunked", "detect_format", "detokenize", "entities_of", "read_docs",
           "result_line"]
