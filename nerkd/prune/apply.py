"""Physical head removal and its bookkeeping (original head indices, parameters, MACs).

Weights are sliced by :func:`nerkd.models.heads.keep_heads`; a layer that loses every head gets an
``EmptySelfAttention`` (only the output bias remains). Which *original* heads each layer keeps is
stored in the model config as ``nerkd_head_index`` (saved in config.json by ``NerModel.save``), so a
second prune of a pruned model can still report original head numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nerkd.models.heads import encoder_layers, keep_heads

INDEX_KEY = "nerkd_head_index"


def original_heads(model: nn.Module) -> tuple[list[list[int]], bool]:
    """Original index of each current head, per layer, and whether it is known.

    Known when the model is unpruned or was pruned by nerkd (``config.nerkd_head_index``); otherwise
    current indices are returned and the flag is False.
    """
    counts = [la.num_heads for la in encoder_layers(model)]
    stored = getattr(model.config, INDEX_KEY, None)
    if (isinstance(stored, list) and len(stored) == len(counts)
            and all(isinstance(row, list) and len(row) == n for row, n in zip(stored, counts, strict=True))):
        return [[int(h) for h in row] for row in stored], True
    pruned = any(n != model.config.num_attention_heads for n in counts)
    return [list(range(n)) for n in counts], not pruned


def remove_heads(model: nn.Module, remove: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Remove ``(layer, current head)`` pairs in place; returns the kept *original* heads per layer.

    Layers with nothing to remove are not touched (pruning 0 heads leaves the model bit-identical).
    """
    index, _ = original_heads(model)
    layers = encoder_layers(model)
    drop: list[set[int]] = [set() for _ in layers]
    for layer, head in remove:
        if not 0 <= layer < len(layers) or not 0 <= head < layers[layer].num_heads:
            raise ValueError(f"no head {head} in layer {layer}")
        drop[layer].add(head)
    kept_original = []
    for la, gone, orig in zip(layers, drop, index, strict=True):
        keep = [h for h in range(la.num_heads) if h not in gone]
        if gone:
            keep_heads(la, keep)
        kept_original.append([orig[h] for h in keep])
    setattr(model.config, INDEX_KEY, kept_original)
    return kept_original


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def attention_macs(model: nn.Module, seq_len: int = 128) -> int:
    """Multiply-adds of the attention blocks for one sequence of ``seq_len`` tokens.

    q/k/v and output projections (``4 x T x hidden x heads x d``) plus scores and context
    (``2 x T^2 x heads x d``); feed-forward and embeddings are unchanged by pruning.
    """
    hidden = int(model.config.hidden_size)
    total = 0
    for la in encoder_layers(model):
        width = la.num_heads * la.head_size
        total += 4 * seq_len * hidden * width + 2 * seq_len * seq_len * width
    return total
