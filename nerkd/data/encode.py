"""Sub-word alignment, windows for long sentences, and length-bucketed batches.

Word tags go on the first sub-token of each word; the other sub-tokens and the special tokens
get ``-100`` (ignored by the losses). A sentence whose sub-tokens do not fit ``max_length``
is cut at word boundaries into overlapping windows (``stride`` sub-tokens of overlap); each word
is *owned* by exactly one window (the one where it sits furthest from an edge), and only owned
words carry a label, so nothing is counted twice and nothing is lost. Splits are counted in
:class:`EncodeStats`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nerkd.data.schemes import IGNORE


@dataclass
class Window:
    sent: int                  # index of the sentence
    input_ids: list[int]
    word_index: list[int]      # per position: word index if first sub-token of an owned word, else -1
    labels: list[int]          # per position: tag id on owned first sub-tokens, else -100
    slots: tuple[list[int], list[int]] | None = None  # raw-text windows: (positions, word indices) owned

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeStats:
    sentences: int = 0
    windows: int = 0
    split_sentences: int = 0
    clipped_words: int = 0     # words longer than a whole window: only their first sub-tokens kept
    long_chunks: int = 0       # raw-text chunks longer than a whole window, tokenised word by word

    def summary(self) -> str:
        extra = f", {self.long_chunks} over-long chunks tokenised word by word" if self.long_chunks else ""
        return (f"{self.sentences} sentences -> {self.windows} windows "
                f"({self.split_sentences} long sentences split, {self.clipped_words} over-long words clipped{extra})")


def special_ids(tokenizer) -> tuple[list[int], list[int]]:
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([cls] if cls is not None else []), ([sep] if sep is not None else [])


def plan_windows(word_lengths: Sequence[int], budget: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(first_word, end_word, own_start, own_end)`` over words of given sub-token lengths.

    Each window holds at most ``budget`` sub-tokens (a single longer word is clipped by the
    caller); consecutive windows overlap by about ``stride`` sub-tokens; owned ranges tile the
    sentence exactly.
    """
    n = len(word_lengths)
    lengths = [min(max(1, w), budget) for w in word_lengths]
    spans = []
    start = 0
    while True:
        total, end = 0, start
        while end < n and total + lengths[end] <= budget:
            total += lengths[end]
            end += 1
        spans.append((start, end))
        if end >= n:
            break
        back, nxt = 0, end
        while nxt > start + 1 and back + lengths[nxt - 1] <= stride:
            back += lengths[nxt - 1]
            nxt -= 1
        start = nxt
    windows = []
    for i, (s, e) in enumerate(spans):
        own_s = 0 if i == 0 else (spans[i - 1][1] + s + 1) // 2 if spans[i - 1][1] > s else s
        own_e = n if i == len(spans) - 1 else (e + spans[i + 1][0] + 1) // 2 if e > spans[i + 1][0] else e
        windows.append((s, e, own_s, own_e))
    for (_, _, _, e1), (_, _, s2, _) in zip(windows, windows[1:], strict=False):
        assert e1 == s2, "owned ranges must tile the sentence"
    return windows


class PieceCache:
    """Sub-word ids of words, cached: ``tokenizer(words, is_split_into_words=True)`` tokenises
    each word on its own, so a word's pieces depend only on the word (and, for some
    tokenizers, on being the first word). Misses are tokenised together, each non-first word
    after an anchor word whose pieces are dropped, so the ids are exactly the tokenizer's. A
    word the tokenizer maps to nothing (e.g. a lone control character) gets the unknown token.
    The cache is emptied when it reaches ``max_entries`` (memory stays bounded on any stream).
    """

    ANCHOR = "a"

    def __init__(self, tokenizer, max_entries: int = 500_000):
        self.tokenizer = tokenizer
        self.max_entries = max_entries
        self.unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        # read once: a transformers tokenizer's attributes cost ~20 us each (``__getattr__``), 4 per encode call
        self.special = special_ids(tokenizer)
        self.map: dict[tuple[str, bool], list[int]] = {}

    def pieces(self, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """Pieces of every word of every sentence."""
        table = self.map
        wanted = {(w, i == 0) for words in sentences for i, w in enumerate(words)}
        missing = wanted - table.keys()
        if missing:
            if len(table) + len(missing) > self.max_entries:
                table.clear()          # then every word of this call is tokenised again
                missing = wanted
            firsts = [w for w, first in missing if first]
            others = [w for w, first in missing if not first]
            # first words one per sequence; the others many per sequence, after the anchor
            seqs = [([w], [(w, True)]) for w in firsts]
            seqs += [([self.ANCHOR, *others[k: k + 256]], [None] + [(w, False) for w in others[k: k + 256]])
                     for k in range(0, len(others), 256)]
            enc = self.tokenizer([words for words, _ in seqs], is_split_into_words=True, add_special_tokens=False,
                                 verbose=False)   # long sequences of cached words: no "too long" warning
            for j, (_, keys) in enumerate(seqs):
                found: list[list[int]] = [[] for _ in keys]
                for t, k in zip(enc["input_ids"][j], enc.word_ids(j), strict=True):
                    if k is not None:
                        found[k].append(t)
                for key, ids in zip(keys, found, strict=True):
                    if key is not None:
                        table[key] = ids or [self.unk]
        return [[table[(w, i == 0)] for i, w in enumerate(words)] for words in sentences]


def encode(tokenizer, sentences: Sequence[Sequence[str]], tag_ids: Sequence[Sequence[int]] | None,
           max_length: int, stride: int, stats: EncodeStats | None = None,
           chunk: int = 2048, cache: PieceCache | None = None) -> list[Window]:
    """Encode word lists into windows (see module doc). ``tag_ids`` None: labels are 0 placeholders."""
    stats = stats if stats is not None else EncodeStats()
    cache = cache if cache is not None else PieceCache(tokenizer)
    prefix, suffix = cache.special if cache.tokenizer is tokenizer else special_ids(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    out: list[Window] = []
    for base in range(0, len(sentences), chunk):
        batch = sentences[base : base + chunk]
        for j, pieces in enumerate(cache.pieces(batch)):
            sid = base + j
            tags = tag_ids[sid] if tag_ids is not None else None
            stats.sentences += 1
            lengths = [len(p) for p in pieces]
            if sum(lengths) <= budget:  # the common case: one window owning every word
                plan = [(0, len(pieces), 0, len(pieces))]
            else:
                plan = plan_windows(lengths, budget, stride)
                stats.split_sentences += len(plan) > 1
            stats.windows += len(plan)
            for s, e, own_s, own_e in plan:
                input_ids, word_index, labels = list(prefix), [-1] * len(prefix), [IGNORE] * len(prefix)
                for w in range(s, e):
                    p = pieces[w]
                    if len(p) > budget:
                        stats.clipped_words += 1
                        p = p[:budget]
                    owned = own_s <= w < own_e
                    input_ids += p
                    word_index.append(w if owned else -1)
                    labels.append((tags[w] if tags is not None else 0) if owned else IGNORE)
                    if len(p) > 1:
                        word_index += [-1] * (len(p) - 1)
                        labels += [IGNORE] * (len(p) - 1)
                input_ids += suffix
                word_index += [-1] * len(suffix)
                labels += [IGNORE] * len(suffix)
                out.append(Window(sid, input_ids, word_index, labels))
    return out


def collate(windows: Sequence[Window], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a list of windows into tensors ``input_ids, attention_mask, labels, word_index, sent``."""
    width = max(len(w) for w in windows)
    if pad_to:
        width = -(-width // pad_to) * pad_to
    pads = [width - len(w) for w in windows]
    input_ids = torch.tensor([w.input_ids + [pad_id] * k for w, k in zip(windows, pads, strict=True)],
                             dtype=torch.long)
    attention = torch.tensor([[1] * len(w) + [0] * k for w, k in zip(windows, pads, strict=True)], dtype=torch.long)
    labels = torch.tensor([w.labels + [IGNORE] * k for w, k in zip(windows, pads, strict=True)], dtype=torch.long)
    word_index = torch.tensor([w.word_index + [-1] * k for w, k in zip(windows, pads, strict=True)],
                              dtype=torch.long)
    sent = torch.tensor([w.sent for w in windows], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "word_index": word_index, "sent": sent}


def bucket_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
                   shuffle: bool = False, seed: int = 0, bucket_factor: int = 50) -> list[list[int]]:
    """Index batches of similar lengths, capped by ``batch_size`` and, if set, ``max_tokens``
    (padded size: rows x longest). With ``shuffle``, samples are shuffled then sorted within
    buckets of ``bucket_factor`` batches, and the batch order is shuffled, all from ``seed``."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        size = batch_size * bucket_factor
        order = [i for b in range(0, len(order), size)
                 for i in sorted(order[b : b + size], key=lambda k: lengths[k])]
    else:
        order.sort(key=lambda k: lengths[k])
    batches, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        too_many = len(cur) >= batch_size
        too_big = max_tokens is not None and cur and new_longest * (len(cur) + 1) > max_tokens
        if too_many or too_big:
            batches.append(cur)
            cur, new_longest = [], lengths[i]
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches
