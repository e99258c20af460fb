"""Entity-level scores with seqeval (default, CoNLL-style lenient mode)."""

from __future__ import annotations

from collections.abc import Sequence

from nerkd.data.schemes import convert, detect_scheme


def evaluate(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """``{"precision", "recall", "f1", "support", "per_type": {TYPE: {...}}}``, values in 0..1.

    Both sides are converted to BIO first so IO, BIO and BIOES compare on the same spans.
    """
    from seqeval.metrics import classification_report

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    g = [convert(s, "BIO") if detect_scheme(s) != "BIO" else list(s) for s in gold]
    p = [convert(s, "BIO") if detect_scheme(s) != "BIO" else list(s) for s in pred]
    for i, (a, b) in enumerate(zip(g, p, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"sentence {i}: {len(a)} gold tags but {len(b)} predicted")
    rep = classification_report(g, p, output_dict=True, zero_division=0)
    per_type = {k: _row(v) for k, v in rep.items() if k not in ("micro avg", "macro avg", "weighted avg")}
    micro = rep.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    return {**_row(micro), "per_type": per_type}


def _row(v: dict) -> dict:
    return {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
            "support": int(v["support"])}
