"""Errors in context: what each wrong entity of a sentence is, the sentences to show, and the counts
(pure functions: no I/O, no logging; the sentences' text never leaves the returned records).

A sentence's gold and predicted entities are spans ``(type, start, end)`` over its words, ``end``
exclusive (as :func:`nerkd.data.schemes.spans_of` gives them). A predicted entity with the type and
both borders of a gold entity is right; every other entity is in exactly one error record:

* ``wrong_type``: the borders of a gold entity, another type (label ``LOC→ORG``, gold → predicted);
* ``boundary``: the type of an overlapping gold entity, other borders: ``ORG too short`` (inside the
  gold entity), ``ORG too long`` (covers it), ``ORG shifted`` (overlaps it partly);
* ``type_boundary``: another type and other borders (``LOC→ORG, too long``);
* ``missed``: a gold entity left without a predicted one (``missed PER``);
* ``spurious``: a predicted entity left without a gold one (``spurious LOC``).

Overlapping gold and predicted entities are paired one to one, the largest overlap first, then the
leftmost; an entity left over (no overlap, or its overlap taken by a better pair) is missed or
spurious. So the records of a sentence account for seqeval's counts exactly: records with a gold
entity = false negatives, records with a predicted entity = false positives.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from nerkd.data.schemes import spans_of

Span = tuple[str, int, int]
KINDS = ("missed", "spurious", "wrong_type", "boundary", "type_boundary")
DEFAULT_SENTENCES = 20


@dataclass(frozen=True)
class ErrorRecord:
    kind: str                 # one of KINDS
    label: str                # LOC→ORG, ORG too short, missed PER, ...
    gold: Span | None = None
    pred: Span | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "gold": list(self.gold) if self.gold else None,
                "pred": list(self.pred) if self.pred else None}


def boundary(gold: Span, pred: Span) -> str:
    """``too short``, ``too long`` or ``shifted``: the predicted borders against the gold ones."""
    (_, gs, ge), (_, ps, pe) = gold, pred
    if gs <= ps and pe <= ge:
        return "too short"
    if ps <= gs and ge <= pe:
        return "too long"
    return "shifted"


def _overlap(a: Span, b: Span) -> int:
    return max(0, min(a[2], b[2]) - max(a[1], b[1]))


def _pair_record(gold: Span, pred: Span) -> ErrorRecord:
    same_borders = gold[1:] == pred[1:]
    if same_borders:
        return ErrorRecord("wrong_type", f"{gold[0]}→{pred[0]}", gold, pred)
    if gold[0] == pred[0]:
        return ErrorRecord("boundary", f"{gold[0]} {boundary(gold, pred)}", gold, pred)
    return ErrorRecord("type_boundary", f"{gold[0]}→{pred[0]}, {boundary(gold, pred)}", gold, pred)


def classify(gold: Iterable[Span], pred: Iterable[Span]) -> list[ErrorRecord]:
    """The error records of one sentence (none for an exact match), in the order of their first word."""
    gold, pred = [tuple(s) for s in gold], [tuple(s) for s in pred]
    right = set(gold) & set(pred)
    gold_left = [g for g in gold if g not in right]
    pred_left = [p for p in pred if p not in right]
    pairs = sorted(((g, p) for g in gold_left for p in pred_left if _overlap(g, p)),
                   key=lambda gp: (-_overlap(*gp), gp[0][1], gp[1][1]))
    records, used_gold, used_pred = [], set(), set()
    for g, p in pairs:
        if g not in used_gold and p not in used_pred:
            used_gold.add(g)
            used_pred.add(p)
            records.append(_pair_record(g, p))
    records += [ErrorRecord("missed", f"missed {g[0]}", gold=g) for g in gold_left if g not in used_gold]
    records += [ErrorRecord("spurious", f"spurious {p[0]}", pred=p) for p in pred_left if p not in used_pred]

    def first_word(r: ErrorRecord) -> tuple[int, int]:
        spans = [s for s in (r.gold, r.pred) if s]
        return min(s[1] for s in spans), max(s[2] for s in spans)

    return sorted(records, key=first_word)


def confusion(records: Iterable[ErrorRecord]) -> dict[str, int]:
    """Records per label, most frequent first (then by label)."""
    counts = Counter(r.label for r in records)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def by_kind(records: Iterable[ErrorRecord]) -> dict[str, int]:
    counts = Counter(r.kind for r in records)
    return {k: counts.get(k, 0) for k in KINDS}


def pick(error_counts: Sequence[int], k: int, seed: int) -> list[int]:
    """Indices of the ``k`` sentences with most errors, most first; ties in a shuffled order drawn from
    ``seed`` (the same for every model of a report); a sentence without error is never picked."""
    rng = random.Random(seed)
    tie = [rng.random() for _ in error_counts]
    ranked = sorted((i for i, n in enumerate(error_counts) if n > 0), key=lambda i: (-error_counts[i], tie[i]))
    return ranked[: max(k, 0)]


# -- one model's errors over a file ------------------------------------------------------------

@dataclass
class SentenceErrors:
    index: int                 # 0-based position in the scored file
    source: str
    line: int
    tokens: list[str]
    gold: list[Span]
    pred: list[Span]
    errors: list[ErrorRecord]

    def as_dict(self) -> dict:
        return {"index": self.index, "source": self.source, "line": self.line, "tokens": self.tokens,
                "gold": [list(s) for s in self.gold], "pred": [list(s) for s in self.pred],
                "errors": [e.as_dict() for e in self.errors]}


@dataclass
class ModelErrors:
    name: str
    sampled: bool                               # sentences picked for this model (its own row, not a runtime's)
    confusion: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    sentences_with_errors: int = 0
    shown: list[SentenceErrors] = field(default_factory=list)


@dataclass
class ErrorsSection:
    sentences: int                              # report.errors_in_context (0: no sentence shown)
    seed: int
    models: list[ModelErrors] = field(default_factory=list)


def model_errors(name: str, sentences: Sequence, gold_tags: Sequence[Sequence[str]],
                 pred_tags: Sequence[Sequence[str]], *, k: int, seed: int) -> ModelErrors:
    """Classify every sentence (``sentences``: objects with ``tokens``, ``source`` and ``line``, as the
    readers give them) and keep the ``k`` with most errors (:func:`pick`)."""
    per_sentence = [classify(spans_of(g), spans_of(p)) for g, p in zip(gold_tags, pred_tags, strict=True)]
    every = [r for recs in per_sentence for r in recs]
    out = ModelErrors(name, k > 0, confusion(every), by_kind(every), sum(1 for recs in per_sentence if recs))
    for i in pick([len(recs) for recs in per_sentence], k, seed):
        s = sentences[i]
        out.shown.append(SentenceErrors(i, str(s.source), int(s.line), list(s.tokens), spans_of(gold_tags[i]),
                                        spans_of(pred_tags[i]), per_sentence[i]))
    return out


def collect(sentences: Sequence, gold_tags: Sequence[Sequence[str]], rows: Sequence, *, k: int,
            seed: int) -> ErrorsSection:
    """Every report row's errors (``rows``: :class:`nerkd.report.records.ModelRow`); sentences are picked
    for a model's own rows, not for its runtime rows (int8, bf16), which get their counts only."""
    return ErrorsSection(k, seed, [model_errors(r.name, sentences, gold_tags, r.score.predictions,
                                                k=k if r.base else 0, seed=seed) for r in rows])
