"""From word tags to character-offset entities in the original text."""

from __future__ import annotations

from collections.abc import Sequence

from nerkd.data.schemes import spans_of

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
