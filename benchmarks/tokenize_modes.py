#!/usr/bin/env python
"""Accuracy of ``nerkd infer --tokenize words`` vs ``--tokenize text``, for models trained each way.

A Unigram (SentencePiece-style, like CamemBERT's) tokenizer is trained on all the WikiNEuRal-fr
sentences. Two small IO taggers (2 layers, hidden 128, from scratch, same seed and steps) are
trained on the sentences not evaluated:

* "trained on words": each word tokenised alone, as nerkd trains (``▁Lyon ▁.``);
* "trained on raw text": the detokenised sentence's own sub-words (``▁Lyon .``), each word's
  label on the sub-word that ``--tokenize text`` reads for it.

nerkd's engine then runs each model in both modes on the first ``--sentences`` sentences
(detokenised) and the entity spans are scored against the gold spans (exact span F1, IO types).
It answers: does ``--tokenize text`` (fewer sub-words, faster) cost accuracy, and for which models?

    python benchmarks/tokenize_modes.py --sentences 2000 --train-steps 3000 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from infer_vs_pipeline import DEFAULT_DATA, IO_LABELS, compare, gold_spans, train_windows  # noqa: E402

from nerkd.data.encode import IGNORE, PieceCache, encode  # noqa: E402
from nerkd.data.readers import read_sentences  # noqa: E402
from nerkd.data.schemes import convert  # noqa: E402
from nerkd.data.textpieces import TextPieceCache, encode_text  # noqa: E402
from nerkd.data.words import split_words  # noqa: E402
from nerkd.infer import Engine, detokenize  # noqa: E402
from nerkd.models.scratch import train_tokenizer  # noqa: E402


def word_tags(tokens: list[str], tags: list[str]) -> tuple[str, list, list[str]]:
    """The detokenised text, its split_words, and each word's gold IO tag (the tag of the gold
    token holding the word's first character)."""
    text = detokenize(tokens)
    ends = [len(detokenize(tokens[: i + 1])) for i in range(len(tokens))]
    starts = [e - len(t) for e, t in zip(ends, tokens, strict=True)]
    io = convert(tags, "IO")
    words = split_words(text)
    out, k = [], 0
    for _, ws, _ in words:
        while k + 1 < len(tokens) and ends[k] <= ws:
            k += 1
        out.append(io[k] if starts[k] <= ws < ends[k] else "O")
    return text, words, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sentences", type=int, default=2000, help="first N sentences: evaluated, not trained on")
    p.add_argument("--train-steps", type=int, default=3000)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sents, _ = read_sentences(args.data, "conll")
    evals, train = sents[: args.sentences], sents[args.sentences:]
    texts = [detokenize(s.tokens) for s in evals]
    gold = [gold_spans(s.tokens, s.tags) for s in evals]
    tok = train_tokenizer([detokenize(s.tokens) for s in sents], args.vocab)
    l2i = {lab: i for i, lab in enumerate(IO_LABELS)}
    print(f"{len(train)} training sentences, {len(evals)} evaluated; tokenizer {len(tok)} pieces", file=sys.stderr)

    # training windows, both ways
    word_windows = encode(tok, [s.tokens for s in train], [[l2i[t] for t in convert(s.tags, "IO")] for s in train],
                          128, 32)
    labelled = [word_tags(s.tokens, s.tags) for s in train]
    text_windows = encode_text(TextPieceCache(tok), PieceCache(tok), [t for t, _, _ in labelled],
                               [w for _, w, _ in labelled], 128, 32)
    shared = 0
    for w in text_windows:
        labels = [IGNORE] * len(w.input_ids)
        for pos, k in zip(*w.slots, strict=True):
            if labels[pos] == IGNORE:
                labels[pos] = l2i[labelled[w.sent][2][k]]
            else:
                shared += 1
        w.labels = labels
    sub = {"words": sum(len(w) for w in word_windows), "text": sum(len(w) for w in text_windows)}
    print(f"training sub-words: words {sub['words']:,}, raw text {sub['text']:,} "
          f"({sub['words'] / sub['text']:.3f}x); {shared} words share a sub-word with an earlier word "
          f"(trained on the first word's label)", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="nerkd-tokmodes-"))
    rows = []
    for trained, windows in (("words", word_windows), ("raw text", text_windows)):
        folder = work / trained.replace(" ", "_")
        loss = train_windows(windows, tok, args.train_steps, args.seed, folder)
        for mode in ("words", "text"):
            engine = Engine.load(folder, device="cpu", precision="fp32", tokenize=mode, max_length=512, stride=128)
            start = time.perf_counter()
            got = [[(e["start"], e["end"], e["label"]) for e in ents] for ents in engine.predict(texts)]
            sec = time.perf_counter() - start
            c = compare(texts, gold, got)
            rows.append((trained, loss, mode, c, sec))
    n_words = sum(len(split_words(t)) for t in texts)
    print(f"\n{len(evals)} evaluated sentences, {n_words} words; {args.train_steps} steps, batch 32, seed {args.seed}")
    print("\n| model trained on | final loss | `--tokenize` | span F1 vs gold | precision | recall | gold spans | "
          "predicted | words/s (2-layer model) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for trained, loss, mode, c, sec in rows:
        print(f"| {trained} | {loss:.3f} | {mode} | {100 * c['agreement']:.2f}% | {100 * c['of_spans']:.2f}% | "
              f"{100 * c['of_reference']:.2f}% | {c['reference_spans']} | {c['spans']} | {n_words / sec:,.0f} |")


if __name__ == "__main__":
    main()
