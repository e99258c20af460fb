"""Attention-head pruning, as a library: importance (Michel et al., 2019), selection, physical removal.

The ``nerkd prune`` stage that strings them together is :mod:`nerkd.stages.prune`.
"""

from nerkd.prune.apply import attention_macs, count_parameters, original_heads, remove_heads
from nerkd.prune.importance import HeadGates, Importance, compute_importance, masked_logits, normalize
from nerkd.prune.select import Selection, heads_for_rate, select_global, select_heads, select_per_layer

__all__ = [
    "HeadGates", "Importance", "Selection", "attention_macs", "compute_importance", "count_parameters",
    "heads_for_rate", "masked_logits", "normalize", "original_heads", "remove_heads", "select_global",
    "select_heads", "select_per_layer",
]
