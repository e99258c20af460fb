"""What benchmarks/onnx_vs_torch.py and benchmarks/serve_load.py share: WikiNEuRal sentences as raw text, and
the real MiniLM cut to a 3-layer nerkd student (random classifier head: real speed, meaningless spans)."""

from __future__ import annotations

from pathlib import Path

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def read_conllu(path: Path, n: int) -> list[str]:
    """The first ``n`` sentences of an ``idx<TAB>token<TAB>tag`` file, detokenised."""
    from nerkd.infer.io import detokenize

    texts, tokens = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0].isdigit():
                tokens.append(parts[1])
            elif tokens:
                texts.append(detokenize(tokens))
                tokens = []
                if len(texts) >= n:
                    break
    if tokens and len(texts) < n:
        texts.append(detokenize(tokens))
    return texts


def build_student(minilm: Path, folder: Path) -> Path:
    """MiniLM cut to 3 layers by nerkd's rule, WikiNEuRal labels, random classifier (seed 0)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerkd.data.labels import LabelSpace
    from nerkd.models.ner import NerModel
    from nerkd.models.student import default_layers, student_from_teacher

    torch.manual_seed(0)
    base = AutoModelForTokenClassification.from_pretrained(
        minilm, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={x: i for i, x in enumerate(LABELS)})
    teacher = NerModel(base).eval()
    student = student_from_teacher(teacher, default_layers(teacher.num_layers, 3), LabelSpace(tuple(LABELS)), False)
    student.eval().save(folder, tokenizer=AutoTokenizer.from_pretrained(minilm))
    return folder
