"""Models: loading/saving token classifiers (with optional CRF and pruned heads)."""

import os as _os

_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_transformers() -> None:
    """No transformers progress bars or info logs on stderr: nerkd draws its own."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
