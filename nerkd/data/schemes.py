"""Tag schemes IO, BIO (IOB2) and BIOES: detection, validation, conversion, and which tag may
follow which (:func:`transition_masks`, read by decoding and by the CRF losses)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from nerkd.data.labels import LabelSpace

SCHEMES = ("IO", "BIO", "BIOES")
IGNORE = -100  # label id of the positions no loss reads (specials, padding, sub-tokens after a word's first)


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``. Raises ValueError otherwise."""
    if tag == "O":
        return "O", None
    prefix, sep, etype = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not etype:
        raise ValueError(f"tag {tag!r} is not O or PREFIX-TYPE with PREFIX in B, I, E, S")
    return prefix, etype


def detect_scheme(tags: Iterable[str]) -> str:
    """The smallest scheme whose prefixes cover every tag seen."""
    prefixes = {split_tag(t)[0] for t in tags}
    if prefixes & {"E", "S"}:
        return "BIOES"
    if "B" in prefixes:
        return "BIO"
    return "IO"


def entity_types(tags: Iterable[str]) -> list[str]:
    return sorted({t for tag in tags if (t := split_tag(tag)[1])})


def labels_for(types: Iterable[str], scheme: str) -> list[str]:
    """Label list ``["O", ...]`` of ``scheme`` over ``types``, in a stable order."""
    prefixes = {"IO": "I", "BIO": "BI", "BIOES": "BIES"}[scheme]
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


def spans_of(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end_exclusive)`` of a tag sequence in any scheme.

    Lenient like seqeval's default mode: an ``I-X`` after ``O`` or another type opens an entity.
    """
    spans: list[tuple[str, int, int]] = []
    cur_type, cur_start = None, 0
    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        starts = prefix in ("B", "S") or (prefix in ("I", "E") and etype != cur_type)
        if prefix == "O" or starts:
            if cur_type is not None:
                spans.append((cur_type, cur_start, i))
            cur_type = None
        if prefix != "O" and (starts or cur_type is None):
            cur_type, cur_start = etype, i
        if prefix in ("E", "S") and cur_type is not None:
            spans.append((cur_type, cur_start, i + 1))
            cur_type = None
    if cur_type is not None:
        spans.append((cur_type, cur_start, len(tags)))
    return spans


def tags_from_spans(n: int, spans: Iterable[tuple[str, int, int]], scheme: str) -> list[str]:
    tags = ["O"] * n
    for etype, start, end in spans:
        for i in range(start, end):
            if scheme == "IO":
                prefix = "I"
            elif scheme == "BIO":
                prefix = "B" if i == start else "I"
            else:
                prefix = "S" if end - start == 1 else "B" if i == start else "E" if i == end - 1 else "I"
            tags[i] = f"{prefix}-{etype}"
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert a tag sequence to ``scheme`` (IO loses the border between two touching entities)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return tags_from_spans(len(tags), spans_of(tags), scheme)


def invalid_tags(tags: Sequence[str], scheme: str) -> list[int]:
    """Positions of the tags that break ``scheme`` (IO never breaks).

    BIO (IOB2): an ``I-X`` that follows neither ``B-X`` nor ``I-X``. BIOES: that, an ``E-X`` likewise,
    and a ``B-X``/``I-X`` not followed by ``I-X``/``E-X``. :func:`spans_of` reads them leniently: an
    ``I-X`` or ``E-X`` without a ``B-X`` opens an entity (read as ``B-X``/``S-X``), an entity with no
    ``E-X`` ends at the next ``O``, ``B-`` or ``S-``.
    """
    if scheme == "IO":
        return []
    bad = []
    prev_prefix, prev_type = "O", None
    n = len(tags)
    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        inside = prev_prefix in ("B", "I") and prev_type == etype
        if prefix == "I" and not inside:
            bad.append(i)
        elif scheme == "BIOES":
            if prefix == "E" and not inside:
                bad.append(i)
            elif prefix in ("B", "I"):
                nxt = split_tag(tags[i + 1]) if i + 1 < n else ("O", None)
                if nxt[0] not in ("I", "E") or nxt[1] != etype:
                    bad.append(i)
        prev_prefix, prev_type = prefix, etype
    return bad


def transition_masks(space: LabelSpace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(start[L], trans[L, L], end[L])`` booleans: which tags may start, follow, end a sentence."""
    import torch

    labels = space.labels
    n = len(labels)
    parts = [split_tag(lab) for lab in labels]
    scheme = space.scheme
    start = torch.ones(n, dtype=torch.bool)
    end = torch.ones(n, dtype=torch.bool)
    trans = torch.ones(n, n, dtype=torch.bool)
    if scheme == "IO":
        return start, trans, end
    for j, (pj, tj) in enumerate(parts):
        if pj in ("I", "E"):
            start[j] = False
        if scheme == "BIOES" and pj in ("B", "I"):
            end[j] = False
        for i, (pi, ti) in enumerate(parts):
            inside_prev = pi in ("B", "I")
            if scheme == "BIO":
                ok = pj != "I" or (inside_prev and ti == tj)
            else:
                if inside_prev:
                    ok = pj in ("I", "E") and ti == tj
                else:
                    ok = pj in ("O", "B", "S")
            trans[i, j] = ok
    return start, trans, end
