"""What to annotate next: score unlabelled notes by how much their annotation should teach, keep the best N.

The score of a note (higher: annotate it sooner), from the model's word-level label probabilities
(:meth:`nerkd.infer.engine.Engine.predict_probs`, one distribution per French word of
:func:`nerkd.data.words.split_words`):

* **uncertainty** of each word, in [0, 1]: ``entropy``, the entropy of its label distribution over ``log L``
  (``L`` labels), or ``margin``, one minus the gap between its two likeliest labels' probabilities;
* of the note: the mean over its ``top_words`` most uncertain words, a note with fewer words counting the
  missing ones as certain (0). A plain mean over all words would drown a doubtful name in a long note's easy
  words, a sum would favour long notes whatever they hold, and the mean of its few worst words, unpadded, would
  let a one-word note win on one doubtful word; a batch counted in notes learns most from the notes holding a
  few doubtful words, which this ranks first;
* with a student, **disagreement**: the share of the note's words whose entity label (the type of the entity
  covering the word, and whether the word begins it; ``O`` outside entities) differs between the two models'
  entities, so models of different tag schemes (IO, BIO) compare. The score is then
  ``(1 - student_weight) x uncertainty + student_weight x disagreement``;
* ``random``: no model score, a seeded random order (the baseline of the proof in BENCHMARKS.md).

Scores are rounded to 6 decimals (batching noise then never decides); equal scores are ordered by a seeded
hash of the note's line number, so a run is repeatable and another seed breaks ties differently.

**Diversity**: a note whose set of lower-cased words has a Jaccard similarity of at least ``dedup`` with a
better-ranked note kept so far is dropped (counted), and a note outranking its near-duplicates replaces them.

**Streamed**: the notes are read and scored chunk by chunk; only a bounded heap of the best ``n`` candidates
(their text, words and score) is kept, so memory is O(n + chunk) whatever the input's size.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nerkd.data.words import split_words
from nerkd.infer.io import Doc, chunked

if TYPE_CHECKING:
    import torch

    from nerkd.infer.engine import Engine

STRATEGIES = ("entropy", "margin", "random")
DECIMALS = 6


# -- scores --------------------------------------------------------------------------------------------
def word_uncertainty(probs: torch.Tensor, strategy: str) -> torch.Tensor:
    """Uncertainty in [0, 1] of each word of ``probs`` (``[W, L]`` label probabilities)."""
    import torch

    if probs.shape[0] == 0:
        return probs.new_zeros(0)
    n_labels = probs.shape[-1]
    if n_labels < 2:
        return probs.new_zeros(probs.shape[0])
    if strategy == "entropy":
        p = probs.clamp_min(0)
        ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
        return (ent / math.log(n_labels)).clamp(0, 1)
    if strategy == "margin":
        top = probs.topk(2, dim=-1).values
        return (1 - (top[:, 0] - top[:, 1])).clamp(0, 1)
    raise ValueError(f"unknown strategy {strategy!r}")


def note_uncertainty(uncertainty: torch.Tensor, top_words: int) -> float:
    """Mean over the ``top_words`` most uncertain words, missing words counting 0 (see module doc)."""
    if uncertainty.numel() == 0:
        return 0.0
    k = min(top_words, int(uncertainty.numel()))
    return float(uncertainty.topk(k).values.sum()) / top_words


def word_labels(words: Sequence[tuple[str, int, int]], entities: Sequence[dict]) -> list[str]:
    """Each word's entity label: ``B-TYPE`` for the first word of an entity, ``I-TYPE`` for the next, ``O``."""
    labels = ["O"] * len(words)
    i = 0
    for start, end, label in sorted((e["start"], e["end"], e["label"]) for e in entities):
        while i < len(words) and words[i][2] <= start:
            i += 1
        prefix = "B"
        while i < len(words) and words[i][1] < end:
            labels[i] = f"{prefix}-{label}"
            prefix = "I"
            i += 1
    return labels


def disagreement(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of positions whose labels differ (0 for no word)."""
    if not a:
        return 0.0
    return sum(x != y for x, y in zip(a, b, strict=True)) / len(a)


def tiebreak(seed: int, line: int) -> int:
    """A seeded pseudo-random key of an input line (larger ranks first among equal scores)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{line}".encode(), digest_size=8).digest(), "big")


def word_set(words: Sequence[tuple[str, int, int]]) -> frozenset[str]:
    return frozenset(w.lower() for w, _, _ in words)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


# -- the bounded, near-duplicate-free heap -------------------------------------------------------------
@dataclass
class Candidate:
    doc: Doc
    score: float
    key: int                                 # seeded tie-break
    words: frozenset[str]
    entities: list[dict] | None = None       # the model's, when it has run on the note
    uncertainty: float = 0.0
    disagreement: float | None = None

    @property
    def rank(self) -> tuple[float, int, int]:
        return (self.score, self.key, -self.doc.line)


class Chooser:
    """The best ``n`` candidates offered so far, no two of them near-duplicates (``threshold``: word-set
    Jaccard; None keeps them). Memory: ``n`` candidates."""

    def __init__(self, n: int, threshold: float | None):
        self.n, self.threshold = n, threshold
        self.heap: list[tuple[tuple[float, int, int], Candidate]] = []   # worst first
        self.duplicates = 0

    def _similar(self, a: frozenset[str], b: frozenset[str]) -> bool:
        t = self.threshold
        if t is None:
            return False
        small, big = sorted((len(a), len(b)))
        if big and small / big < t:     # Jaccard <= |small| / |big|: cannot reach t
            return False
        return jaccard(a, b) >= t

    def offer(self, cand: Candidate) -> None:
        rank = cand.rank
        if len(self.heap) >= self.n and rank <= self.heap[0][0]:
            return
        similar = [i for i, (_, m) in enumerate(self.heap) if self._similar(m.words, cand.words)]
        if any(self.heap[i][0] > rank for i in similar):
            self.duplicates += 1
            return
        if similar:
            self.duplicates += len(similar)
            drop = set(similar)
            self.heap = [x for i, x in enumerate(self.heap) if i not in drop]
            heapq.heapify(self.heap)
        heapq.heappush(self.heap, (rank, cand))
        if len(self.heap) > self.n:
            heapq.heappop(self.heap)

    def chosen(self) -> list[Candidate]:
        """Best first."""
        return [c for _, c in sorted(self.heap, key=lambda x: x[0], reverse=True)]


# -- the scan ------------------------------------------------------------------------------------------
@dataclass
class SelectConfig:
    n: int = 200
    strategy: str = "entropy"
    top_words: int = 5
    student_weight: float = 0.5
    dedup: float | None = 0.8
    seed: int = 0
    chunk_size: int = 512


@dataclass
class SelectStats:
    read: int = 0            # input lines (notes) read
    empty: int = 0           # empty or blank: skipped
    scored: int = 0          # notes scored
    duplicates: int = 0      # near-duplicates dropped
    chosen: int = 0
    low: float | None = None     # score range over every scored note
    high: float | None = None
    chosen_low: float | None = None    # ... and over the chosen ones
    chosen_high: float | None = None

    def see(self, score: float) -> None:
        self.scored += 1
        self.low = score if self.low is None else min(self.low, score)
        self.high = score if self.high is None else max(self.high, score)


def score_chunk(docs: Sequence[Doc], model: Engine | None, student: Engine | None, cfg: SelectConfig
                ) -> Iterator[Candidate]:
    """A candidate per non-empty note of ``docs``, scored as the module doc says."""
    words = [split_words(d.text) for d in docs]
    if cfg.strategy == "random":
        for d, ws in zip(docs, words, strict=True):
            yield Candidate(d, 0.0, tiebreak(cfg.seed, d.line), word_set(ws))
        return
    texts = [d.text for d in docs]
    tagged = model.predict_probs(texts)
    other = student.predict(texts) if student is not None else None
    for i, (d, ws, (ents, probs)) in enumerate(zip(docs, words, tagged, strict=True)):
        unc = note_uncertainty(word_uncertainty(probs, cfg.strategy), cfg.top_words)
        dis = None
        score = unc
        if other is not None:
            dis = disagreement(word_labels(ws, ents), word_labels(ws, other[i]))
            score = (1 - cfg.student_weight) * unc + cfg.student_weight * dis
        yield Candidate(d, round(score, DECIMALS), tiebreak(cfg.seed, d.line), word_set(ws), ents,
                        round(unc, DECIMALS), None if dis is None else round(dis, DECIMALS))


@dataclass
class Selection:
    chosen: list[Candidate]      # best first
    stats: SelectStats


def select_notes(docs: Iterable[Doc], model: Engine | None, cfg: SelectConfig, *, student: Engine | None = None,
                 on_chunk=None) -> Selection:
    """The ``cfg.n`` notes of ``docs`` to annotate first, best first, each with the model's entities (see
    module doc). ``model`` may be None for ``random`` (the chosen notes are then tagged by nobody: the
    caller tags them). ``on_chunk(chunk, stats)`` after each chunk (progress)."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}")
    if model is None and cfg.strategy != "random":
        raise ValueError(f"strategy {cfg.strategy!r} needs a model")
    stats = SelectStats()
    chooser = Chooser(cfg.n, cfg.dedup)
    for chunk in chunked(iter(docs), cfg.chunk_size):
        stats.read += len(chunk)
        live = [d for d in chunk if d.text.strip()]
        stats.empty += len(chunk) - len(live)
        for cand in score_chunk(live, model, student, cfg):
            stats.see(cand.score)
            chooser.offer(cand)
        if on_chunk is not None:
            on_chunk(chunk, stats)
    chosen = chooser.chosen()
    stats.duplicates, stats.chosen = chooser.duplicates, len(chosen)
    if chosen:
        stats.chosen_low, stats.chosen_high = chosen[-1].score, chosen[0].score
    return Selection(chosen, stats)
