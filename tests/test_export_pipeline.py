"""The exported Hugging Face folder in a transformers ``pipeline`` gives ``nerkd infer``'s entities (#22 item 14).

``aggregation_strategy="first"`` is the call that matches nerkd, which labels a word's first sub-word. Two
tokenizer shapes: the scratch SentencePiece tokenizer (``--base scratch``, CamemBERT's pre-tokenizer) and a
BERT WordPiece tokenizer (MiniLM's shape), each under a tiny model with random weights and IO labels: IO
decoding is an argmax per word in nerkd as in the pipeline, and random weights tag nearly every word, so any
word grouped or cut differently, or any offset off by one, shows as a different entity.

With a SentencePiece tokenizer the pipeline finds words by the spaces around sub-words (it warns "Tokenizer
does not support real words"): punctuation glued to a word is part of that word (``Lyon.``). Those are the
only differences allowed on notes written as people write them.
"""

from __future__ import annotations

import warnings

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.data.words import split_words
from nerkd.export import export_hf
from nerkd.models.ner import NerModel
from tests.helpers import DATA, IO_LABELS, sample_texts, wordpiece_tokenizer

SPACED = sample_texts()[:120]   # sentences of the sample data as written there: words between spaces
NOTES = [orjson.loads(x)["text"] for x in (DATA / "medsoc_handwritten.jsonl").read_bytes().splitlines() if x.strip()]
NOTES += [t for t in (DATA / "texts.txt").read_text(encoding="utf-8").splitlines() if t.strip()]


@pytest.fixture(scope="module")
def bert_io(tmp_path_factory):
    """A tiny BERT with a WordPiece tokenizer that adds [CLS] and [SEP], as a pretrained one does."""
    from tokenizers import decoders, processors
    from transformers import BertConfig

    tok = wordpiece_tokenizer(sample_texts())
    backend = tok.backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", backend.token_to_id("[CLS]")), ("[SEP]", backend.token_to_id("[SEP]"))])
    backend.decoder = decoders.WordPiece()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=132, pad_token_id=tok.pad_token_id,
                        id2label=dict(enumerate(IO_LABELS)), label2id={lab: i for i, lab in enumerate(IO_LABELS)})
    return NerModel.from_config(config).save(tmp_path_factory.mktemp("models") / "bert_io", tokenizer=tok)


def _nerkd(runner, tmp_path, model, texts, tokenize):
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", str(model), "--input", str(tmp_path / "in.txt"), "--output",
                              str(tmp_path / "out.jsonl"), "--tokenize", tokenize, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    return [{(e["start"], e["end"], e["label"]) for e in orjson.loads(x)["entities"]} for x in lines]


def _pipeline(folder, texts):
    from transformers import pipeline

    ner = pipeline("token-classification", model=str(folder), aggregation_strategy="first", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # SentencePiece: "Tokenizer does not support real words"
        return [{(e["start"], e["end"], e["entity_group"]) for e in r} for r in ner(texts)]


def _agreement(ours, theirs) -> float:
    same = sum(len(a & b) for a, b in zip(ours, theirs, strict=True))
    return same / max(1, sum(len(a) for a in ours))


def _glued(text: str, tokenizer) -> list[tuple[int, int]]:
    """Spans of the tokenizer's pre-tokens (the pipeline's words) that are not exactly one nerkd word."""
    words = {(s, e) for _, s, e in split_words(text)}
    return [span for _, span in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
            if tuple(span) not in words]


def _unexplained(texts, ours, theirs, tokenizer) -> list[str]:
    """Entities found on one side only that neither touch nor follow (across one space) a word the two sides
    split differently (an entity next to such a word can start or end at another word)."""
    out = []
    for k, (text, a, b) in enumerate(zip(texts, ours, theirs, strict=True)):
        glued = _glued(text, tokenizer)
        for s, e, label in a ^ b:
            if not any(gs <= e + 1 and s - 1 <= ge for gs, ge in glued):
                out.append(f"text {k}: {label} {s}-{e}")
    return out


@pytest.mark.parametrize("shape", ["scratch-sentencepiece", "wordpiece"])
def test_pipeline_first_gives_nerkd_entities(shape, tiny_io_teacher, bert_io, runner, in_tmp):
    from transformers import AutoTokenizer

    model, tokenize = (tiny_io_teacher, "text") if shape.startswith("scratch") else (bert_io, "words")
    folder = export_hf(model, in_tmp / "hf").output
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # the scratch tokenizer's sub-words never cover a space, and a word never starts with a bare "▁"
    enc = tokenizer("Suivi par le CCAS de Lyon", return_offsets_mapping=True)
    assert all(not "Suivi par le CCAS de Lyon"[s:e].isspace() and " " not in "Suivi par le CCAS de Lyon"[s:e]
               for s, e in enc["offset_mapping"])
    assert "\u2581" not in tokenizer.get_vocab()
    for texts in (SPACED, NOTES):
        ours, theirs = _nerkd(runner, in_tmp, model, texts, tokenize), _pipeline(folder, texts)
        assert sum(map(len, ours)) > 3 * len(texts)             # random weights: entities nearly everywhere
        found, extra = _agreement(ours, theirs), 1 - _agreement(theirs, ours)
        unexplained = _unexplained(texts, ours, theirs, tokenizer)   # positions only: never a note's text
        print(f"{shape}: {found:.1%} of nerkd's entities from the pipeline; {extra:.1%} of the pipeline's not nerkd's")
        assert not unexplained
        if texts is SPACED:   # the sample sentences (words between spaces): few words split differently
            assert found >= 0.95
