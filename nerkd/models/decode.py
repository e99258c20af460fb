"""Word-level decoding (model prediction) shared by evaluation, ``infer``, ``bench`` and ``report``.

Sub-token logits are gathered onto the first sub-token of every owned word (see
:mod:`nerkd.data.encode`), giving one ``[W, L]`` score matrix per sentence. Tags are then
decoded with the model's CRF (Viterbi) when it has one, otherwise with a Viterbi pass over
log-softmax scores restricted to valid transitions (the "constrained argmax": no ``I-X``
after ``O`` in BIO, no dangling ``B-X`` in BIOES...). In IO every transition is valid, so it
equals the plain argmax. Which transitions are valid is the scheme's rule
(:func:`nerkd.data.schemes.transition_masks`, which the CRF losses read too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nerkd.data.encode import Window, bucket_batches, collate
from nerkd.data.labels import LabelSpace
from nerkd.data.schemes import transition_masks
from nerkd.device import autocast

NEG = -1e4


def viterbi(scores: torch.Tensor, start: torch.Tensor, trans: torch.Tensor, end: torch.Tensor,
            trans_scores: torch.Tensor | None = None, start_scores: torch.Tensor | None = None,
            end_scores: torch.Tensor | None = None) -> list[int]:
    """Best path through ``scores[W, L]`` under boolean masks (plus optional CRF scores)."""
    w, n = scores.shape
    if w == 0:
        return []
    scores = scores.float()
    t_bias = torch.where(trans, 0.0, NEG) + (trans_scores if trans_scores is not None else 0.0)
    s_bias = torch.where(start, 0.0, NEG) + (start_scores if start_scores is not None else 0.0)
    e_bias = torch.where(end, 0.0, NEG) + (end_scores if end_scores is not None else 0.0)
    score = scores[0] + s_bias
    back = []
    for k in range(1, w):
        total = score.unsqueeze(1) + t_bias  # [prev, cur]
        best, idx = total.max(dim=0)
        score = best + scores[k]
        back.append(idx)
    score = score + e_bias
    path = [int(score.argmax())]
    for idx in reversed(back):
        path.append(int(idx[path[-1]]))
    return path[::-1]


class Decoder:
    """Decode word scores into tag ids for one label space (and optional CRF)."""

    def __init__(self, space: LabelSpace, crf=None):
        self.space = space
        self.start, self.trans, self.end = transition_masks(space)
        self.crf = crf

    def __call__(self, word_scores: torch.Tensor) -> list[int]:
        if self.crf is not None:
            c = self.crf
            return viterbi(word_scores.float(), self.start, self.trans, self.end,
                           c.transitions.detach().float().cpu(), c.start_transitions.detach().float().cpu(),
                           c.end_transitions.detach().float().cpu())
        ids = word_scores.argmax(-1)
        if len(ids) and bool(self.start[ids[0]] and self.end[ids[-1]] and self.trans[ids[:-1], ids[1:]].all()):
            return ids.tolist()   # the argmax path is valid: no valid path scores more (Viterbi's answer)
        return viterbi(torch.log_softmax(word_scores.float(), -1), self.start, self.trans, self.end)


def gather_words(logits: torch.Tensor, word_index: torch.Tensor, sent: torch.Tensor,
                 store: dict[int, dict[int, torch.Tensor]]) -> None:
    """Add each owned word's first-sub-token logits ``[L]`` to ``store[sentence][word]``."""
    rows, cols = torch.nonzero(word_index >= 0, as_tuple=True)
    if rows.numel() == 0:
        return
    picked = logits[rows, cols].float().cpu()
    words = word_index[rows, cols].tolist()
    sents = sent[rows].tolist()
    for s, w, vec in zip(sents, words, picked, strict=True):
        store.setdefault(s, {})[w] = vec


@torch.no_grad()
def predict_word_scores(model, windows: Sequence[Window], n_words: Sequence[int], *, pad_id: int,
                        batch_size: int = 32, device: torch.device | None = None,
                        precision: str = "fp32", max_tokens: int | None = None) -> list[torch.Tensor]:
    """Run ``model`` over windows (length-bucketed) and return ``[W_i, L]`` scores per sentence."""
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    store: dict[int, dict[int, torch.Tensor]] = {}
    for idx in bucket_batches([len(w) for w in windows], batch_size, max_tokens):
        batch = collate([windows[i] for i in idx], pad_id)
        with autocast(device, precision):
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).logits
        gather_words(logits, batch["word_index"].to(logits.device), batch["sent"].to(logits.device), store)
    model.train(was_training)
    n_labels = model.num_labels
    out = []
    for s, n in enumerate(n_words):
        words = store.get(s, {})
        if n and len(words) != n:
            missing = n - len(words)
            raise RuntimeError(f"sentence {s}: {missing} words got no prediction (window bug)")
        out.append(torch.stack([words[w] for w in range(n)]) if n else torch.zeros(0, n_labels))
    return out


def predict_tags(model, windows: Sequence[Window], n_words: Sequence[int], *, pad_id: int,
                 batch_size: int = 32, device: torch.device | None = None, precision: str = "fp32",
                 space: LabelSpace | None = None) -> list[list[str]]:
    space = space or model.labels
    decoder = Decoder(space, getattr(model, "crf", None))
    scores = predict_word_scores(model, windows, n_words, pad_id=pad_id, batch_size=batch_size,
                                 device=device, precision=precision)
    return [[space.labels[i] for i in decoder(s)] for s in scores]
