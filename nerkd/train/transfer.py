"""The unlabelled batches of a distillation run (``data.unlabeled``) and the teacher-output cache.

**What an epoch takes.** Epoch *e* (1-based) takes the ``per_epoch`` texts at positions
``(e - 1) * per_epoch ..`` of the sampler's endless stream (:class:`nerkd.data.unlabeled.EpochSampler`:
a pass over the set, then the next, each shuffled from the seed), so every epoch serves new texts
until the set is used up, then cycles. Its windows (:func:`~nerkd.data.unlabeled.encode_texts`,
long texts split, never truncated, every label ``IGNORE``) are length-bucketed into batches as gold
windows are, from their own seed, and spread evenly among the gold batches (:func:`interleave`).
Everything is a function of the settings, the file and the epoch, so an epoch is the same when
resumed. Each window is keyed ``(ordinal of its text, rank of the window in the text)``: stable
across runs, the teacher cache's key.

**The teacher cache** (``distill.cache_teacher``, :class:`TeacherCache`). Before the first epoch the
teacher runs once over every kept text's windows (file order, length-sorted batches: the same
whatever the epoch or a resume; under DDP each rank runs its share of the batches and the ranks
exchange them) and its logits and the hidden states the layer map pairs are kept
on the CPU in 16 bits (bf16 when training in bf16, else fp16), real tokens only, up to a memory cap
(:func:`cache_cap`); windows past the cap run the teacher every time. With the cache on, every
teacher output of an unlabelled batch, cached or not, is rounded to that dtype, so losses do not
depend on which rows were cached (or on a resume). A cache only pays once texts come back: when
the run's epochs take no more texts than the set holds, it is not built (and a line says so).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from nerkd.data.encode import PieceCache, Window, bucket_batches, collate
from nerkd.data.unlabeled import EpochSampler, UnlabeledText, encode_texts
from nerkd.device import autocast
from nerkd.log import say

Key = tuple[int, int]          # (text ordinal, window rank within the text)
CACHE_MAX_BYTES = 8 << 30      # the cache's cap: this, or a quarter of the machine's memory if less


def interleave(n_gold: int, n_unlabeled: int) -> list[tuple[str, int]]:
    """The epoch's order: ``("gold", i)`` and ``("unlabeled", j)`` spread evenly, batch ``i`` of a
    source of ``n`` at ``(i + 1/2) / n`` of the epoch (ties: gold first). No randomness: each
    source's batches are already shuffled from the seed."""
    keyed = [((2 * i + 1) * n_unlabeled, 0, i) for i in range(n_gold)]
    keyed += [((2 * j + 1) * n_gold, 1, j) for j in range(n_unlabeled)]
    return [("gold" if kind == 0 else "unlabeled", i) for _, kind, i in sorted(keyed)]


def window_keys(texts: Sequence[UnlabeledText], windows: Sequence[Window]) -> list[Key]:
    """Each window's key: its text's ordinal and its rank among that text's windows (in order)."""
    keys, rank, last = [], 0, -1
    for w in windows:
        rank = rank + 1 if w.sent == last else 0
        last = w.sent
        keys.append((texts[w.sent].ordinal, rank))
    return keys


class UnlabeledEpoch(NamedTuple):
    windows: list[Window]
    keys: list[Key]


@dataclass
class TransferSet:
    """What a run needs to serve unlabelled batches (built by the stages from ``data.unlabeled``)."""

    sampler: EpochSampler
    per_epoch: int             # texts per epoch (distill.unlabeled_ratio x gold windows)
    max_length: int
    stride: int
    cache_teacher: bool = False
    _pieces: PieceCache | None = field(default=None, repr=False)
    _epoch: tuple[int, UnlabeledEpoch] | None = field(default=None, repr=False)   # the last epoch encoded

    @property
    def path(self) -> str:
        return self.sampler.index.path

    @property
    def texts(self) -> int:
        """Kept texts in the set."""
        return self.sampler.index.texts

    def start(self, epoch: int) -> int:
        """Stream position of the first text of ``epoch``."""
        return (epoch - 1) * self.per_epoch

    def windows(self, tokenizer, epoch: int) -> UnlabeledEpoch:
        """The windows of ``epoch``'s texts and their cache keys (the last epoch is kept)."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        if self._pieces is None:
            self._pieces = PieceCache(tokenizer)
        texts = self.sampler.texts(self.start(epoch), self.per_epoch)
        windows = encode_texts(tokenizer, texts, self.max_length, self.stride, cache=self._pieces)
        self._epoch = (epoch, UnlabeledEpoch(windows, window_keys(texts, windows)))
        return self._epoch[1]

    def state(self, epoch: int) -> dict:
        """The sampler's state at the start of ``epoch`` (``TrainState.unlabeled``)."""
        self.sampler.consumed = self.start(epoch)
        return self.sampler.state_dict()

    def restore(self, state: dict | None, epoch: int) -> str | None:
        """Check a checkpoint's sampler state against this set (same file, cap, seed, order) and the
        epoch it was saved at; the problem as a line, or None."""
        from nerkd.errors import DataError

        if not state:
            return "the checkpoint has no unlabelled-set state"
        try:
            self.sampler.load_state_dict(state)
        except DataError as e:
            return str(e)
        if self.sampler.consumed != self.start(epoch):
            return (f"its unlabelled stream is at text {self.sampler.consumed}, epoch {epoch} starts at "
                    f"{self.start(epoch)} (distill.unlabeled_ratio or the gold data changed)")
        return None

    def repeats(self, epochs: int) -> bool:
        """Whether some text is served twice in ``epochs`` epochs (else a cache saves nothing)."""
        return epochs * self.per_epoch > self.texts


# -- the teacher cache ----------------------------------------------------------------------------
def cache_cap() -> int:
    """:data:`CACHE_MAX_BYTES`, or a quarter of the physical memory when that is less."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        return CACHE_MAX_BYTES
    return min(CACHE_MAX_BYTES, physical // 4)


Targets = tuple[Tensor, list[Tensor]]   # teacher logits [B, T, Lt], hidden states [B, T, Ht] per paired layer


class TeacherCache:
    """Teacher outputs of unlabelled windows by key, on the CPU, real tokens only (see module doc)."""

    def __init__(self, dtype: torch.dtype = torch.float16, max_bytes: int | None = None):
        self.dtype = dtype
        self.max_bytes = cache_cap() if max_bytes is None else max_bytes
        self.store: dict[Key, tuple[Tensor, Tensor]] = {}   # key -> (logits [n, Lt], hidden [L, n, Ht])
        self.bytes = 0
        self.full = False       # the cap stopped the fill: some windows are not cached
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.store)

    def add(self, key: Key, logits: Tensor, hidden: Tensor) -> bool:
        """Keep one window's outputs (``[n, Lt]``, ``[L, n, Ht]``); False when the cap is reached."""
        size = (logits.numel() + hidden.numel()) * torch.finfo(self.dtype).bits // 8
        if self.bytes + size > self.max_bytes:
            self.full = True
            return False
        if key not in self.store:
            self.store[key] = (logits.to("cpu", self.dtype).contiguous(), hidden.to("cpu", self.dtype).contiguous())
            self.bytes += size
        return True

    def targets(self, keys: Sequence[Key], input_ids: Tensor, attention_mask: Tensor,
                compute: Callable[[Tensor, Tensor], Targets]) -> Targets:
        """The batch's teacher outputs in the cache's dtype: cached rows from the cache, the others
        computed (``compute(input_ids, attention_mask)`` on those rows only)."""
        rows = [self.store.get(k) for k in keys]
        missing = [i for i, r in enumerate(rows) if r is None]
        self.hits += len(rows) - len(missing)
        self.misses += len(missing)
        device = input_ids.device
        if len(missing) == len(rows):
            logits, hidden = compute(input_ids, attention_mask)
            return logits.to(self.dtype), [h.to(self.dtype) for h in hidden]
        b, t = input_ids.shape
        first = next(r for r in rows if r is not None)
        lt, (n_layers, _, ht) = first[0].shape[-1], first[1].shape
        logits = torch.zeros(b, t, lt, dtype=self.dtype)
        hidden = torch.zeros(n_layers, b, t, ht, dtype=self.dtype)
        for i, r in enumerate(rows):
            if r is not None:
                n = r[0].shape[0]
                logits[i, :n] = r[0]
                hidden[:, i, :n] = r[1]
        logits, hidden = logits.to(device, non_blocking=True), hidden.to(device, non_blocking=True)
        if missing:
            idx = torch.tensor(missing, device=device)
            m_logits, m_hidden = compute(input_ids[idx], attention_mask[idx])
            logits[idx] = m_logits.to(self.dtype)
            hidden[:, idx] = torch.stack([h.to(self.dtype) for h in m_hidden])
        return logits, list(hidden.unbind(0))

    def describe(self, texts: int, seconds: float) -> str:
        full = ", cap reached: the other windows run the teacher every time" if self.full else ""
        return (f"teacher cache: {len(self.store):,} windows of {texts:,} texts, {self.bytes / 2**20:,.1f} MiB "
                f"{str(self.dtype).removeprefix('torch.')} on the CPU (cap {self.max_bytes / 2**30:.1f} GiB), "
                f"filled in {seconds:.1f} s{full}")


def fill_cache(cache: TeacherCache, transfer: TransferSet, tokenizer, compute: Callable[[Tensor, Tensor], Targets],
               device: torch.device, precision: str, batch_size: int, max_tokens: int | None,
               pad_to: int | None, env=None) -> float:
    """Run the teacher once over every kept text's windows (file order, length-sorted batches of
    each chunk) and keep the outputs until the cap; returns the seconds it took.

    Under DDP (``env``, a :class:`nerkd.train.ddp.DistEnv` with several ranks) each rank runs the teacher
    on every ``world_size``-th batch of a chunk only, then the ranks exchange the chunk's outputs (in
    the cache's dtype, on the CPU), and every rank adds all of them in the same order: the same cache
    on every rank for ``1 / world_size`` of the teacher's work, memory bounded by one chunk."""
    from nerkd.train import ddp

    t0 = time.perf_counter()
    pieces = PieceCache(tokenizer)
    index = transfer.sampler.index
    rank, world = (env.rank, env.world_size) if env is not None and env.enabled else (0, 1)
    for c in range(len(index.starts)):
        texts = index.read_chunk(c)
        windows = encode_texts(tokenizer, texts, transfer.max_length, transfer.stride, cache=pieces)
        keys = window_keys(texts, windows)
        mine: list[tuple[Key, Tensor, Tensor]] = []
        for batch in bucket_batches([len(w) for w in windows], batch_size, max_tokens)[rank::world]:
            tensors = collate([windows[k] for k in batch], tokenizer.pad_token_id, pad_to)
            ids, att = tensors["input_ids"].to(device), tensors["attention_mask"].to(device)
            with torch.no_grad(), autocast(device, precision):
                logits, hidden = compute(ids, att)
            stacked = torch.stack(hidden)
            for row, k in enumerate(batch):
                n = len(windows[k])
                if world == 1:
                    if not cache.add(keys[k], logits[row, :n], stacked[:, row, :n]):
                        return time.perf_counter() - t0
                else:
                    mine.append((keys[k], logits[row, :n].to("cpu", cache.dtype),
                                 stacked[:, row, :n].to("cpu", cache.dtype)))
        if world > 1:
            for entries in ddp.gather_objects(mine, env):      # rank order: the same on every rank
                for key, logits, hidden in entries:
                    if not cache.add(key, logits, hidden):
                        return time.perf_counter() - t0
    return time.perf_counter() - t0


def cache_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float16


def build_cache(transfer: TransferSet, objective, tokenizer, *, epochs: int, device: torch.device, precision: str,
                batch_size: int, max_tokens: int | None, pad_to: int | None, env=None) -> TeacherCache | None:
    """The run's teacher cache, filled (``distill.cache_teacher``; under DDP, each rank runs the teacher
    on its share), or None when no text comes back in the run (a line says so)."""
    if not transfer.repeats(epochs):
        say(f"distill.cache_teacher: no unlabelled text comes back in this run ({epochs} epochs x "
            f"{transfer.per_epoch:,} texts <= {transfer.texts:,} texts in the set): no cache, it would save nothing")
        return None
    cache = TeacherCache(cache_dtype(precision))
    seconds = fill_cache(cache, transfer, tokenizer, objective.teacher_targets, device, precision,
                         max(batch_size, 32), max_tokens, pad_to, env)
    shared = f" ({env.world_size} ranks, each running the teacher on its share)" if env is not None and env.enabled \
        else ""
    say(cache.describe(transfer.texts, seconds) + shared)
    return cache
