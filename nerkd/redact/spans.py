"""Spans to replace, from the model and from the rules, and how overlapping ones are merged."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SOURCES = ("model", "rule")


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is to be replaced; ``label`` its type (PER, PHONE...), ``source`` "model" or "rule"."""

    start: int
    end: int
    label: str
    source: str = "model"
    score: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"span [{self.start}, {self.end}): start must be >= 0 and < end")
        if self.source not in SOURCES:
            raise ValueError(f"span source {self.source!r}: expected model or rule")

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end

    def __len__(self) -> int:
        return self.end - self.start


def model_spans(entities: Iterable[dict], thresholds: dict[str, float] | None = None,
                keep_labels: Sequence[str] = ()) -> list[Span]:
    """Spans of ``nerkd infer``'s entity dicts (``start``, ``end``, ``label``, ``score``?); an entity scoring below
    its label's threshold, or of a label in ``keep_labels``, is left as text."""
    thresholds = thresholds or {}
    out = []
    for e in entities:
        label, score = e["label"], e.get("score")
        if label in keep_labels:
            continue
        if score is not None and score < thresholds.get(label, 0.0):
            continue
        if e["end"] > e["start"]:
            out.append(Span(int(e["start"]), int(e["end"]), label, "model", score))
    return out


def longest_first(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans, sorted by start: of overlapping spans the longest wins (ties: the earlier)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    if all(a.end <= b.start for a, b in zip(ordered, ordered[1:], strict=False)):
        return ordered              # the usual case (a model's entities): nothing overlaps
    kept: list[Span] = []
    for span in sorted(ordered, key=lambda s: (-len(s), s.start)):
        if not any(span.overlaps(k) for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def merge_spans(model: Iterable[Span], rules: Iterable[Span], text: str | None = None) -> list[Span]:
    """One list of non-overlapping spans, sorted by start, covering every character that any input span covers.

    Overlapping spans of one source are resolved to the longest. A rule's label wins for identifiers: the
    characters a rule span covers take the rule's label, and a model span overlapping it keeps only its parts
    outside the rule span (cut in two when the rule span lies inside it). With ``text``, a span or part left
    without a letter or digit (a space, a comma) is dropped and the others lose their edge spaces and punctuation
    (:func:`_trimmed`): nothing that identifies stays uncovered, and no bracket is swallowed.
    """
    rule_spans = longest_first(rules)
    if text is not None:
        rule_spans = [t for r in rule_spans if (t := _trimmed(text, r.start, r.end, r)) is not None]
    starts = [r.start for r in rule_spans]
    out = list(rule_spans)
    for span in longest_first(model):
        parts = [(span.start, span.end)]
        first = max(0, bisect.bisect_right(starts, span.start) - 1)    # rule spans are sorted, disjoint
        for r in rule_spans[first: bisect.bisect_left(starts, span.end)]:
            if r.overlaps(span):
                parts = [piece for a, b in parts for piece in ((a, min(b, r.start)), (max(a, r.end), b)) if
                         piece[0] < piece[1]]
        for a, b in parts:
            part = Span(a, b, span.label, span.source, span.score)
            if text is not None:
                part = _trimmed(text, a, b, part)
            if part is not None:
                out.append(part)
    out.sort(key=lambda s: s.start)
    if text is None:
        return out
    # an initial takes its dot unless another span already covers the dot (``M`` then ``.Dupont``)
    return [_with_initials_dot(text, s) if s.source == "model" and (k + 1 == len(out) or out[k + 1].start > s.end)
            else s for k, s in enumerate(out)]


def _with_initials_dot(text: str, span: Span | None) -> Span | None:
    """A model span ending with an initial takes its dot (``Mme [D].`` -> ``Mme [D.]``): the words split the
    dot off, and the mention is ``D.`` (what a surrogate keeps: ``Mme M.``)."""
    if span is None or span.end >= len(text) or text[span.end] != ".":
        return span
    last = text[span.end - 1]
    if not last.isupper() or (span.end - 1 > span.start and text[span.end - 2].isalnum()):
        return span
    return Span(span.start, span.end + 1, span.label, span.source, span.score)


EDGE_PUNCT = ",;:!?"
PAIRS = {"(": ")", "[": "]", "{": "}", "«": "»", "“": "”", '"': '"'}
CLOSERS = {v: k for k, v in PAIRS.items()}


def _trimmed(text: str, a: int, b: int, span: Span) -> Span | None:
    """``span`` cut to ``[a, b)`` without edge spaces, edge ``,;:!?`` and an edge bracket or quote whose partner is
    not inside (``Lefèvre (`` -> ``Lefèvre``, but ``Foyer (ESAT)`` kept); None when nothing alphanumeric is left."""
    if not any(c.isalnum() for c in text[a:b]):
        return None
    while True:
        c, d = text[a], text[b - 1]
        if c.isspace() or c in EDGE_PUNCT or c in CLOSERS or (c in PAIRS and PAIRS[c] not in text[a + 1: b]):
            a += 1
        elif d.isspace() or d in EDGE_PUNCT or (d in PAIRS and d not in CLOSERS) or (
                d in CLOSERS and CLOSERS[d] not in text[a: b - 1]):
            b -= 1
        else:
            break
    if (a, b) == (span.start, span.end):
        return span
    return Span(a, b, span.label, span.source, span.score)
