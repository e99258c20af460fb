"""The mapping file (``--mapping``): what gives the original texts back, written apart and readable by its owner
only (mode 0600), and :func:`restore`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HEADER_KIND = "nerkd redact mapping"


class RestoreError(ValueError):
    """The redacted text does not hold the mapping's replacements (another file, or an edited one)."""


def restore(redacted_text: str, mapping: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """The original text of ``redacted_text``, byte for byte, from its mapping entries (``{start, end, label,
    original, replacement}`` with offsets in the redacted text; or a mapping line ``{"mapping": [...]}``).

    Raises :class:`RestoreError` (which names no value) when a replacement is not where the mapping says."""
    entries: Iterable[Mapping[str, Any]] = mapping["mapping"] if isinstance(mapping, Mapping) else mapping
    out = redacted_text
    for e in sorted(entries, key=lambda e: e["start"], reverse=True):
        start, end = int(e["start"]), int(e["end"])
        if not 0 <= start <= end <= len(out) or out[start:end] != e["replacement"]:
            raise RestoreError(f"no replacement at characters {start}-{end} as the mapping says: not the text "
                               f"this mapping was written for")
        out = out[:start] + e["original"] + out[end:]
    return out


def header(in_format: str, mode: str) -> dict[str, Any]:
    """The mapping file's first line: what wrote it, the input's format (text or jsonl) and the mode."""
    from nerkd import __version__

    return {"kind": HEADER_KIND, "version": 1, "nerkd": __version__, "input_format": in_format, "mode": mode}


def is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("kind") == HEADER_KIND
