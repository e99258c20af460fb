"""Helpers shared by several test files (tests import these, never each other; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
IO_LABELS = ["O", "I-LOC", "I-PER", "I-MISC", "I-ORG"]


def sample_texts() -> list[str]:
    texts = []
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        for line in (DATA / name).read_bytes().splitlines():
            if line.strip():
                texts.append(" ".join(orjson.loads(line)["tokens"]))
    texts += (DATA / "texts.txt").read_text(encoding="utf-8").splitlines()
    return texts


def bio_labels() -> list[str]:
    mapping = orjson.loads((DATA / "label2id.json").read_bytes())
    return [lab for lab, _ in sorted(mapping.items(), key=lambda kv: kv[1])]


# -- training files nerkd must refuse: (file name, content, line named in the error, message) ----------------
GOOD = '{"tokens": ["a", "b"], "tags": ["O", "B-PER"]}\n'

BAD_INPUTS = [
    ("bad.jsonl", GOOD + "{not json\n", 2, "invalid JSON"),
    ("len.jsonl", GOOD + '{"tokens": ["a"], "tags": ["O", "O"]}\n', 2, "1 tokens but 2 tags"),
    ("tag.jsonl", GOOD + GOOD + '{"tokens": ["a"], "tags": ["X-PER"]}\n', 3, "unknown tag"),
    ("utf.jsonl", GOOD.encode() + b'{"tokens": ["\xff"], "tags": ["O"]}\n', 2, "invalid UTF-8"),
    ("range.jsonl", '{"text": "abc", "entities": [{"start": 1, "end": 9, "label": "PER"}]}\n', 1,
     "out of range"),
    ("overlap.jsonl", '{"text": "Jean Dupont", "entities": [{"start": 0, "end": 11, "label": "PER"},'
     ' {"start": 5, "end": 11, "label": "PER"}]}\n', 1, "overlap"),
    ("cols.conll", "a\tO\nb\tc\td\te\n", 2, "4 columns where line 1 has 2"),
    ("one.conll", "a O\nb\n", 2, "got 1 column"),
    ("idx.conll", "0\ta\tO\n1\tb\tO\n\nx\tc\tO\n", 4, "not a token index"),
    ("tag.conll", "a\tO\nb\tPER\n", 2, "unknown tag"),
]


def wordpiece_tokenizer(texts):
    """A BERT-style WordPiece tokenizer (lower-casing, accent-stripping normaliser, punctuation
    pre-splitting): a second tokenizer family for the piece caches."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]",
                                                                                             "[CLS]", "[SEP]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def write_kd_config(folder: Path, teacher, *, epochs: int, **extra) -> str:
    """A small distillation config (sample data, 2-layer student, tiny batches) as ``folder/kd.yaml``;
    ``extra`` updates sections, e.g. ``train={"max_steps": 4}``."""
    import yaml

    cfg = {
        "data": {"train": str(DATA / "train.jsonl"), "dev": str(DATA / "dev.jsonl"),
                 "label2id": str(DATA / "label2id.json"), "max_length": 48, "stride": 8, "limit": 24},
        "teacher": {"model": str(teacher)},
        "student": {"num_layers": 2},
        "distill": {"layer_map": {"teacher": [2, 4], "student": [1, 2]}},
        "train": {"batch_size": 8, "epochs": epochs, "lr": 1e-3, "device": "cpu", "log_every": 1},
    }
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    path = Path(folder) / "kd.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)
