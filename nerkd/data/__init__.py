"""Data layer: readers, tag schemes, labels, sub-word alignment, batching."""
