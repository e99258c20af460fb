"""Which heads to remove, from per-layer importance scores.

Two modes:

* global rate: remove ``round(rate x heads)`` heads (half rounds up) with the lowest scores over the
  whole model;
* per layer: ``{layer: n}`` removes the ``n`` lowest-scoring heads of each named 0-based layer.

A layer never loses its last head unless ``allow_empty`` (the global mode then skips that head and
takes the next lowest elsewhere; the per-layer mode refuses). Ties are broken by ``(layer, head)``
so the choice is deterministic. Head indices are the model's *current* ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nerkd.errors import SettingsError


@dataclass(frozen=True)
class Selection:
    remove: tuple[tuple[int, int], ...]   # (layer, current head), sorted
    mode: str                             # human description of the rule used

    def by_layer(self, layers: int) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(layers)]
        for layer, head in self.remove:
            out[layer].append(head)
        return out

    def keep(self, counts: Sequence[int]) -> list[list[int]]:
        """Current head indices kept in each layer."""
        drop = self.by_layer(len(counts))
        return [[h for h in range(n) if h not in set(drop[i])] for i, n in enumerate(counts)]


def heads_for_rate(rate: float, total: int) -> int:
    """``round(rate x total)`` with halves rounded up (0.25 x 10 -> 3)."""
    return int(math.floor(rate * total + 0.5))


def _check_scores(scores: Sequence[Sequence[float]]) -> None:
    for layer, row in enumerate(scores):
        for head, v in enumerate(row):
            if not math.isfinite(v):
                raise SettingsError(f"head importance of layer {layer} head {head} is {v}: cannot rank heads")


def select_global(scores: Sequence[Sequence[float]], rate: float, allow_empty: bool = False) -> Selection:
    """The ``round(rate x heads)`` globally lowest-scoring heads."""
    if not 0 <= rate < 1:
        raise SettingsError(f"prune rate {rate}: must be >= 0 and < 1")
    _check_scores(scores)
    total = sum(len(row) for row in scores)
    want = heads_for_rate(rate, total)
    left = [len(row) for row in scores]
    order = sorted((v, layer, head) for layer, row in enumerate(scores) for head, v in enumerate(row))
    remove = []
    for _, layer, head in order:
        if len(remove) == want:
            break
        if left[layer] == 1 and not allow_empty:
            continue
        left[layer] -= 1
        remove.append((layer, head))
    if len(remove) < want:
        raise SettingsError(f"prune rate {rate}: {want} of {total} heads to remove, but only {len(remove)} can go "
                            f"without emptying a layer (lower the rate or set prune.allow_empty_layers=true)")
    return Selection(tuple(sorted(remove)), f"rate {rate:g}: {want} of {total} heads, globally lowest")


def select_per_layer(scores: Sequence[Sequence[float]], per_layer: Mapping[int, int],
                     allow_empty: bool = False) -> Selection:
    """The ``n`` lowest-scoring heads of each layer named in ``per_layer`` (0-based layers)."""
    _check_scores(scores)
    remove = []
    for key, n in sorted(per_layer.items()):
        layer = int(key)
        if not 0 <= layer < len(scores):
            raise SettingsError(f"prune.per_layer: layer {layer} does not exist (layers 0..{len(scores) - 1})")
        have = len(scores[layer])
        if n < 0 or n > have:
            raise SettingsError(f"prune.per_layer: layer {layer} has {have} heads, cannot remove {n}")
        if n == have and have > 0 and not allow_empty:
            raise SettingsError(f"prune.per_layer: removing all {have} heads of layer {layer} empties it "
                                f"(set prune.allow_empty_layers=true to allow)")
        ranked = sorted((v, head) for head, v in enumerate(scores[layer]))
        remove += [(layer, head) for _, head in ranked[:n]]
    total = sum(len(row) for row in scores)
    return Selection(tuple(sorted(remove)), f"per layer {dict(sorted(per_layer.items()))}: "
                                            f"{len(remove)} of {total} heads")


def select_heads(scores: Sequence[Sequence[float]], *, rate: float | None = None,
                 per_layer: Mapping[int, int] | None = None, allow_empty: bool = False) -> Selection:
    """Per-layer counts when given, else the global rate."""
    if per_layer:
        return select_per_layer(scores, per_layer, allow_empty)
    return select_global(scores, rate if rate is not None else 0.0, allow_empty)
