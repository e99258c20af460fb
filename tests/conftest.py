"""Offline fixtures: a tokenizer trained on the sample text and tiny CamemBERT models.

No test touches the network or a model hub (HF_HUB_OFFLINE is forced on).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NERKD_NO_PROGRESS"] = "1"
os.environ["COLUMNS"] = "200"  # rich tables: no wrapping inside the asserted text
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

from tests.helpers import IO_LABELS, bio_labels, sample_texts  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bio(tmp_path_factory) -> Path:
    """Tiny CamemBERT (2 layers, hidden 64, 4 heads) with the sample data's BIO labels."""
    from nerkd.models.scratch import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_bio", sample_texts(), bio_labels(),
                            layers=2, hidden=64, heads=4, vocab_size=800, seed=0)


@pytest.fixture(scope="session")
def tiny_io_teacher(tmp_path_factory) -> Path:
    """Tiny CamemBERT (4 layers) with camembert-ner's IO label set (O, I-LOC, I-PER, I-MISC, I-ORG)."""
    from nerkd.models.scratch import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_io", sample_texts(), IO_LABELS,
                            layers=4, hidden=64, heads=4, vocab_size=800, seed=1)


@pytest.fixture(scope="session")
def tiny_crf(tmp_path_factory) -> Path:
    """Tiny CamemBERT with BIO labels and a CRF head."""
    from nerkd.models.scratch import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_crf", sample_texts(), bio_labels(),
                            layers=2, hidden=64, heads=4, vocab_size=800, seed=2, crf=True)


@pytest.fixture(autouse=True, scope="session")
def engine_logs_on_stderr():
    """As under the CLI: the engines' log lines (logger "nerkd") and warnings go to stderr."""
    from nerkd.ui import install

    install()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty project folder (so .nerkd/ state never leaks between tests)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NERKD_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is as fast and far less sensitive to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
