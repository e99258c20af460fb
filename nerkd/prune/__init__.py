"""Attention-head pruning: importance (Michel et al., 2019), selection, physical removal, table."""

from nerkd.prune.apply import attention_macs, count_parameters, original_heads, remove_heads
from nerkd.prune.importance import HeadGates, Importance, compute_importance, masked_logits, normalize
from nerkd.prune.run import IMPORTANCE_FILE, PruneResult, prune_model, run_prune
from nerkd.prune.select import Selection, heads_for_rate, select_global, select_heads, select_per_layer
from nerkd.prune.table import head_table

__all__ = [
    "IMPORTANCE_FILE", "HeadGates", "Importance", "PruneResult", "Selection", "attention_macs",
    "compute_importance", "count_parameters", "head_table", "heads_for_rate", "masked_logits", "normalize",
    "original_heads", "prune_model", "remove_heads", "run_prune", "select_global", "select_heads",
    "select_per_layer",
]
