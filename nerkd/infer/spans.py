"""From word tags to character-offset entities in the original text."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nerkd.data.schemes import spans_of, split_tag

SCORES = ("mean", "min")


def entities_of(text: str, words: Sequence[tuple[str, int, int]], tags: Sequence[str],
                probs: Sequence[float], score: str = "mean") -> list[dict]:
    """Entities ``{"start", "end", "label", "text", "score"}`` with ``text[start:end] == entity text``.

    ``words`` are ``(word, start, end)`` from :func:`nerkd.data.words.split_words`; ``tags`` one
    tag per word in any scheme (IO, BIO, BIOES); ``probs`` the model's probability of each
    chosen tag. ``label`` is the entity type; ``score`` the mean (or min) of its words' ``probs``.
    """
    if not (len(words) == len(tags) == len(probs)):
        raise ValueError(f"{len(words)} words, {len(tags)} tags, {len(probs)} probabilities: lengths differ")
    out = []
    for etype, first, last in spans_of(tags):
        start, end = words[first][1], words[last - 1][2]
        ps = probs[first:last]
        value = min(ps) if score == "min" else sum(ps) / len(ps)
        out.append({"start": start, "end": end, "label": etype, "text": text[start:end],
                    "score": round(float(value), 4)})
    return out


def io_entities(texts: Sequence[str], words: Sequence[Sequence[tuple[str, int, int]]], counts: Sequence[int],
                ids: torch.Tensor, probs: torch.Tensor, labels: Sequence[str], score: str = "mean") -> list[list[dict]]:
    """:func:`entities_of` for IO tags over many texts at once, vectorised.

    ``ids``/``probs``: ``[sum W_i]`` chosen label ids and their probabilities, the words of all
    texts one after the other (``counts[i]`` words for text ``i``). In IO an entity is a maximal
    run of words of one type inside a text; only the entities are visited in Python.
    """
    out: list[list[dict]] = [[] for _ in texts]
    n = int(ids.numel())
    if n == 0:
        return out
    names = [split_tag(lab)[1] for lab in labels]
    kinds = sorted({t for t in names if t})
    type_of = torch.tensor([kinds.index(t) if t else -1 for t in names], dtype=torch.long)
    t = type_of[ids]
    ends = torch.tensor(counts, dtype=torch.long).cumsum(0)
    starts = ends - torch.tensor(counts, dtype=torch.long)
    boundary = torch.zeros(n, dtype=torch.bool)
    boundary[starts[starts < n]] = True
    boundary[1:] |= t[1:] != t[:-1]
    run = boundary.cumsum(0) - 1
    run_start = torch.nonzero(boundary).squeeze(1)
    run_end = torch.cat([run_start[1:], torch.tensor([n])])
    n_runs = int(run_start.numel())
    if score == "min":
        value = torch.full((n_runs,), float("inf"), dtype=torch.float64).scatter_reduce_(
            0, run, probs.double(), "amin")
    else:
        value = torch.zeros(n_runs, dtype=torch.float64).index_add_(0, run, probs.double()) / (run_end - run_start)
    keep = torch.nonzero(t[run_start] >= 0).squeeze(1)
    sent = torch.searchsorted(ends, run_start[keep], right=True)
    for i, a, b, k, v in zip(sent.tolist(), (run_start[keep] - starts[sent]).tolist(),
                             (run_end[keep] - starts[sent]).tolist(), t[run_start[keep]].tolist(),
                             value[keep].tolist(), strict=True):
        ws, text = words[i], texts[i]
        start, end = ws[a][1], ws[b - 1][2]
        out[i].append({"start": start, "end": end, "label": kinds[k], "text": text[start:end],
                       "score": round(v, 4)})
    return out
