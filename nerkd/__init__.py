"""nerkd: make a French NER transformer small and fast (distil, prune, fine-tune, serve)."""

__version__ = "0.1.0"
