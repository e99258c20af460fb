"""Leak metrics of a redaction: how much of the gold entities' text the replacements cover.

A leak is worse than an over-redaction, and a leak is about characters, not about exact borders: a
name whose first half is replaced and second half kept has leaked. So the unit here is the
character, and only **non-space characters** count (``not ch.isspace()``): the space between
``Nadia`` and ``Durand`` is neither a leak nor an over-redaction, and gold spans built from words
and replacements built from characters agree on what they cover.

Given, per document, its text, its gold entity spans and the spans a redaction replaced (both in
the original text's character offsets, ``end`` exclusive), :func:`leak_score` counts:

- **redaction recall** (per gold label and overall): the share of gold entity characters inside a
  replacement of *any* label (a name replaced as an organisation has not leaked);
- **documents fully redacted**: the share of documents with at least one gold entity character in
  which every gold entity character is covered (per label: of the documents with that label, those
  in which every character of that label is covered);
- **over-redaction**: the share of non-entity characters (outside every gold span) that a
  replacement covers; per label, the share replaced by replacements of that label (the per-label
  figures add up to the overall one, since merged replacements do not overlap).

Pure computation: no model, no file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Span = tuple[int, int, str]   # (start, end, label), end exclusive, in the original text's characters


@dataclass
class LabelLeak:
    """The figures of one label: gold characters and documents (as a gold label), over-redacted characters
    (as a replacement's label)."""

    label: str
    chars: int = 0         # gold non-space characters of this label
    covered: int = 0       # of which inside a replacement (any label)
    docs: int = 0          # documents with a gold entity of this label
    docs_full: int = 0     # of which every character of this label is covered
    over_chars: int = 0    # non-entity characters replaced by a replacement of this label

    @property
    def recall(self) -> float | None:
        return self.covered / self.chars if self.chars else None

    @property
    def full_share(self) -> float | None:
        return self.docs_full / self.docs if self.docs else None


@dataclass
class LeakScore:
    """:func:`leak_score`'s result: overall figures and one :class:`LabelLeak` per label (gold or replaced)."""

    documents: int = 0        # all documents scored
    docs: int = 0             # documents with at least one gold entity character
    docs_full: int = 0        # of which every gold entity character is covered
    chars: int = 0            # gold entity non-space characters
    covered: int = 0          # of which covered
    outside_chars: int = 0    # non-space characters outside every gold entity
    over_chars: int = 0       # of which replaced
    labels: dict[str, LabelLeak] = field(default_factory=dict)

    @property
    def recall(self) -> float | None:
        return self.covered / self.chars if self.chars else None

    @property
    def full_share(self) -> float | None:
        return self.docs_full / self.docs if self.docs else None

    @property
    def over_redaction(self) -> float | None:
        return self.over_chars / self.outside_chars if self.outside_chars else None

    def label(self, name: str) -> LabelLeak:
        if name not in self.labels:
            self.labels[name] = LabelLeak(name)
        return self.labels[name]

    def as_dict(self) -> dict:
        """JSON-ready: counts and shares (0..1, None when there is nothing to divide by)."""
        return {
            "documents": self.documents, "docs_with_entities": self.docs, "docs_fully_redacted": self.docs_full,
            "docs_fully_redacted_share": self.full_share, "entity_chars": self.chars, "covered_chars": self.covered,
            "recall": self.recall, "outside_chars": self.outside_chars, "over_redacted_chars": self.over_chars,
            "over_redaction": self.over_redaction,
            "per_label": {name: {
                "entity_chars": lab.chars, "covered_chars": lab.covered, "recall": lab.recall, "docs": lab.docs,
                "docs_fully_redacted": lab.docs_full, "docs_fully_redacted_share": lab.full_share,
                "over_redacted_chars": lab.over_chars,
                "over_redaction": lab.over_chars / self.outside_chars if self.outside_chars else None,
            } for name, lab in sorted(self.labels.items())},
        }


def _paint(n: int, spans: Sequence[Span], what: str) -> list[str | None]:
    """The label over each of ``n`` characters (None: none); spans must lie in the text and not overlap."""
    marks: list[str | None] = [None] * n
    for start, end, label in spans:
        if not 0 <= start <= end <= n:
            raise ValueError(f"{what} span {start}-{end} ({label}) out of range for a text of {n} characters")
        for i in range(start, end):
            if marks[i] is not None:
                raise ValueError(f"{what} spans overlap at character {i}")
            marks[i] = label
    return marks


def add_document(score: LeakScore, text: str, gold: Sequence[Span], replaced: Sequence[Span]) -> None:
    """Count one document into ``score`` (see the module doc). ``replaced``: the redaction's spans in the
    original text (merged: no overlap)."""
    gold_marks = _paint(len(text), gold, "gold")
    done = _paint(len(text), replaced, "replaced")
    chars: dict[str, int] = {}
    covered: dict[str, int] = {}
    for ch, g, r in zip(text, gold_marks, done, strict=True):
        if ch.isspace():
            continue
        if g is None:
            score.outside_chars += 1
            if r is not None:
                score.over_chars += 1
                score.label(r).over_chars += 1
            continue
        chars[g] = chars.get(g, 0) + 1
        covered[g] = covered.get(g, 0) + (r is not None)
    score.documents += 1
    for name, n in chars.items():
        lab = score.label(name)
        lab.chars += n
        lab.covered += covered[name]
        lab.docs += 1
        lab.docs_full += covered[name] == n
    if chars:
        score.docs += 1
        score.docs_full += sum(covered.values()) == sum(chars.values())
    score.chars += sum(chars.values())
    score.covered += sum(covered.values())


def leak_score(docs: Iterable[tuple[str, Sequence[Span], Sequence[Span]]]) -> LeakScore:
    """Leak metrics over ``(text, gold spans, replaced spans)`` per document (see the module doc)."""
    score = LeakScore()
    for text, gold, replaced in docs:
        add_document(score, text, gold, replaced)
    return score
