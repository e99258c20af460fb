"""Sub-words of the raw text, for inference (``infer.tokenize: text``).

``encode`` tokenises French words one by one, as models are trained on word lists: with a
SentencePiece tokenizer every word gets its own ``▁`` (``▁Lyon ▁.``). Raw text gives fewer sub-words
(``▁Lyon .``), which is what the transformers pipeline feeds the same model. Here the text is cut at
whitespace into *chunks* (``Lyon.``, ``l'EHPAD``: one or more glued words) and each chunk is
tokenised as the tokenizer tokenises raw text, so a sentence written with single spaces gets exactly
``tokenizer(text)["input_ids"]`` (except a chunk the tokenizer drops whole, such as a lone control
character: it gets the unknown token, so that its word has a prediction). A chunk's first word takes
its prediction from the chunk's first sub-word (as training labels the first sub-word of each word,
a bare ``▁`` included); a glued word from the first sub-word overlapping it (glued words may share
one). Long texts are cut into overlapping windows at chunk boundaries, like
:func:`~nerkd.data.encode.encode`; a chunk longer than a whole window falls back to word-by-word
sub-words (counted in ``EncodeStats``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from nerkd.data.encode import IGNORE, EncodeStats, PieceCache, Window, plan_windows, special_ids
from nerkd.data.words import split_words

Words = Sequence[tuple[str, int, int]]   # (word, start, end) of one text, from split_words


def representatives(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Index of the sub-word each word takes its prediction from: the first non-empty sub-word
    overlapping the word; else the last sub-word starting before the word's end; else 0.

    ``offsets``: ``[P]`` character spans of the sub-words; ``spans``: ``[W]`` character spans of the
    words (same origin, both sorted).
    """
    out, j = [], 0
    for ws, we in spans:
        while j < len(offsets) and offsets[j][1] <= ws:   # sub-words ending before the word
            j += 1
        k = next((i for i in range(j, len(offsets)) if offsets[i][1] > offsets[i][0] and offsets[i][0] < we), None)
        if k is None or offsets[k][0] >= we:
            k = max((i for i, (a, _) in enumerate(offsets) if a < we), default=0)
        out.append(k)
    return out


class TextPieceCache:
    """Sub-word ids of whitespace chunks, and which sub-word each of the chunk's words reads.

    A chunk is tokenised alone when it starts its text, else after an anchor word and a space
    (as it sits in raw text); the anchor's sub-words are dropped. Emptied when it holds
    ``max_entries`` chunks, so memory stays bounded on any stream.
    """

    ANCHOR = "a"

    def __init__(self, tokenizer, max_entries: int = 500_000):
        self.tokenizer = tokenizer
        self.max_entries = max_entries
        self.unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        self.map: dict[tuple[str, bool], tuple[list[int], list[int]]] = {}

    def _fill(self, keys: list[tuple[str, bool]]) -> None:
        seqs: list[tuple[str, list[int], list[tuple[str, bool] | None]]] = []
        for key in keys:
            if key[1]:
                seqs.append((key[0], [0], [key]))
        others = [k for k in keys if not k[1]]
        for b in range(0, len(others), 256):
            part = others[b: b + 256]
            starts, at = [0], len(self.ANCHOR) + 1
            for chunk, _ in part:
                starts.append(at)
                at += len(chunk) + 1
            seqs.append((" ".join([self.ANCHOR, *(c for c, _ in part)]), starts, [None, *part]))
        enc = self.tokenizer([s for s, _, _ in seqs], add_special_tokens=False, return_offsets_mapping=True,
                             verbose=False)   # long sequences of cached chunks: no "too long" warning
        for j, (_, starts, owners) in enumerate(seqs):
            ends = [s + len(c[0]) if c else s + len(self.ANCHOR) for s, c in zip(starts, owners, strict=True)]
            ids: list[list[int]] = [[] for _ in owners]
            offs: list[list[tuple[int, int]]] = [[] for _ in owners]
            for t, (a, b) in zip(enc["input_ids"][j], enc["offset_mapping"][j], strict=True):
                k = min(bisect_right(ends, (b - 1) if b > a else a), len(owners) - 1)
                ids[k].append(t)
                offs[k].append((max(a, starts[k]) - starts[k], max(b, starts[k]) - starts[k]))
            for k, key in enumerate(owners):
                if key is None:
                    continue
                spans = [(s, e) for _, s, e in split_words(key[0])]
                if not ids[k]:
                    self.map[key] = ([self.unk], [0] * len(spans))
                else:   # the chunk's first word reads the chunk's first sub-word (a bare "▁" too), as in training
                    self.map[key] = (ids[k], [0, *representatives(offs[k], spans[1:])])

    def pieces(self, keys: Sequence[tuple[str, bool]]) -> list[tuple[list[int], list[int]]]:
        """``(sub-word ids, sub-word index of each word)`` of each ``(chunk, starts its text)``."""
        wanted = set(keys)
        missing = wanted - self.map.keys()
        if missing:
            if len(self.map) + len(missing) > self.max_entries:
                self.map.clear()
                missing = wanted
            self._fill(sorted(missing))
        return [self.map[k] for k in keys]


def chunks_of(text: str, words: Words) -> list[tuple[str, int]]:
    """Whitespace chunks of ``text`` as ``(chunk, number of words in it)``; words glued together
    (no space between them) share a chunk."""
    out: list[tuple[str, int]] = []
    start = end = -1
    n = 0
    for _, s, e in words:
        if s != end and n:
            out.append((text[start:end], n))
            n = 0
        if n == 0:
            start = s
        end, n = e, n + 1
    if n:
        out.append((text[start:end], n))
    return out


def encode_text(cache: TextPieceCache, words_cache: PieceCache, texts: Sequence[str], words: Sequence[Words],
                max_length: int, stride: int, stats: EncodeStats | None = None) -> list[Window]:
    """Windows over the raw-text sub-words of ``texts`` (see module doc); each window's ``slots``
    hold ``(positions, word indices)`` of the words it owns. Texts with no word are skipped."""
    stats = stats if stats is not None else EncodeStats()
    prefix, suffix = special_ids(cache.tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    per_text = [chunks_of(t, ws) for t, ws in zip(texts, words, strict=True)]
    found = cache.pieces([(c, i == 0) for chunks in per_text for i, (c, _) in enumerate(chunks)])
    out: list[Window] = []
    at = 0
    for sid, (chunks, ws) in enumerate(zip(per_text, words, strict=True)):
        if not chunks:
            continue
        stats.sentences += 1
        units: list[tuple[list[int], list[int]]] = []   # (ids, sub-word index per word), word order
        w0 = 0
        for i, (_, n) in enumerate(chunks):
            ids, reps = found[at + i]
            if len(ids) > budget or len(reps) != n:  # over-long chunk: its words one by one
                stats.long_chunks += 1
                for p in words_cache.pieces([[w for w, _, _ in ws[w0: w0 + n]]])[0]:
                    if len(p) > budget:
                        stats.clipped_words += 1
                    units.append((p[:budget], [0]))
            else:
                units.append((ids, reps))
            w0 += n
        at += len(chunks)
        lengths = [len(u[0]) for u in units]
        if sum(lengths) <= budget:
            plan = [(0, len(units), 0, len(units))]
        else:
            plan = plan_windows(lengths, budget, stride)
            stats.split_sentences += len(plan) > 1
        stats.windows += len(plan)
        first_word = [0]
        for u in units:
            first_word.append(first_word[-1] + len(u[1]))
        for s, e, own_s, own_e in plan:
            ids = list(prefix)
            positions: list[int] = []
            for u in range(s, e):
                if own_s <= u < own_e:
                    positions += [len(ids) + r for r in units[u][1]]
                ids += units[u][0]
            ids += suffix
            out.append(Window(sid, ids, [-1] * len(ids), [IGNORE] * len(ids),
                              slots=(positions, list(range(first_word[own_s], first_word[own_e])))))
    return out
