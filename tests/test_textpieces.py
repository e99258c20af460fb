"""``infer.tokenize: text``: raw-text sub-words, words mapped onto them, windows, the engine."""

from __future__ import annotations

import pytest
import torch

from nerkd.data.encode import PieceCache, encode, special_ids
from nerkd.data.readers import read_sentences
from nerkd.data.textpieces import TextPieceCache, chunks_of, encode_text, representatives
from nerkd.data.words import split_words
from nerkd.infer import Engine, detokenize
from nerkd.models.ner import NerModel, load_tokenizer
from tests.helpers import DATA, sample_texts, wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

ODD = ["Mme Lefèvre quitte l'EHPAD de Saint-Étienne (Loire).", "«aujourd'hui» 12,5 % d'EHPAD... ok?!",
       "x", "😀😀 Lyon.", "Jusqu'à demain, M. Dupont-Martin !"]


def texts_of_dev() -> list[str]:
    sents, _ = read_sentences(DATA / "dev.jsonl")
    return [detokenize(s.tokens) for s in sents] + ODD


def reference_slots(tok, text: str) -> list[int]:
    """Independent: the raw-text encoding's positions read by each word (chunk-first word: the
    chunk's first sub-word; glued word: the first non-empty sub-word overlapping it)."""
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    offsets = enc["offset_mapping"]
    shift = len(special_ids(tok)[0])
    out = []
    prev_end = None
    for _, ws, we in split_words(text):
        if ws != prev_end:   # starts a chunk: its first sub-word (ending after the previous chunk)
            after = prev_end if prev_end is not None else -1
            k = next(i for i, (_, b) in enumerate(offsets) if b > after)
        else:
            k = next(i for i, (a, b) in enumerate(offsets) if b > a and b > ws and a < we)
        out.append(shift + k)
        prev_end = we
    return out


@pytest.mark.parametrize("family", ["unigram", "wordpiece"])
def test_text_pieces_equal_the_tokenizer_on_raw_text(tiny_bio, family):
    texts = texts_of_dev()
    tok = load_tokenizer(tiny_bio) if family == "unigram" else wordpiece_tokenizer(texts)
    for size in (10_000, 7):       # plenty, then a cache that keeps emptying itself
        cache = TextPieceCache(tok, max_entries=size)
        words = [split_words(t) for t in texts]
        for _ in range(2):         # cold, then cached
            windows = encode_text(cache, PieceCache(tok), texts, words, 512, 32)
            assert [w.sent for w in windows] == list(range(len(texts)))
            for t, w in zip(texts, windows, strict=True):
                head, tail = special_ids(tok)
                assert w.input_ids == head + tok(t, add_special_tokens=False)["input_ids"] + tail, t
                positions, word_ids = w.slots
                assert word_ids == list(range(len(split_words(t))))
                assert positions == reference_slots(tok, t), t


@pytest.mark.parametrize("family", ["unigram", "wordpiece"])
def test_chunk_the_tokenizer_drops_gets_unknown(tiny_bio, family):
    text = "Lyon \x00 ."
    tok = load_tokenizer(tiny_bio) if family == "unigram" else wordpiece_tokenizer(texts_of_dev())
    (w,) = encode_text(TextPieceCache(tok), PieceCache(tok), [text], [split_words(text)], 64, 8)
    dropped = not tok("\x00", add_special_tokens=False)["input_ids"]
    head, tail = special_ids(tok)
    raw = head + tok(text, add_special_tokens=False)["input_ids"] + tail
    if dropped:
        assert tok.unk_token_id in w.input_ids and len(w.input_ids) == len(raw) + 1
    else:
        assert w.input_ids == raw
    assert len(w.slots[0]) == 3 and len(set(w.slots[0])) == 3


def test_raw_text_has_fewer_sub_words_with_sentencepiece():
    """nerkd's raw-text windows (``tokenize: text``) spend fewer positions on the same texts than its word-by-word
    windows (``tokenize: words``): glued words ("l'EHPAD", "(Loire).") cost one "▁", not one per word, with a
    vocabulary that has a bare "▁" (CamemBERT's; the scratch tokenizer's has none unless asked)."""
    from nerkd.models.scratch import train_tokenizer

    tok = train_tokenizer(sample_texts(), 800, bare_space=True)
    texts = texts_of_dev()
    words = [split_words(t) for t in texts]
    raw = encode_text(TextPieceCache(tok), PieceCache(tok), texts, words, 512, 32)
    per_word = encode(tok, [[w for w, _, _ in ws] for ws in words], None, 512, 32)
    assert [w.sent for w in raw] == [w.sent for w in per_word] == list(range(len(texts)))  # one window per text
    assert sum(map(len, raw)) < sum(map(len, per_word))


def test_representatives_straddling_and_uncovered_words():
    # sub-words: "▁l" (0,1) "'EH" (1,4) "PAD" (4,7) "." (7,8); words: "l'" (0,2) "EHPAD" (2,7) "." (7,8)
    assert representatives([(0, 1), (1, 4), (4, 7), (7, 8)], [(0, 2), (2, 7), (7, 8)]) == [0, 1, 3]
    # a word the normaliser dropped (no sub-word overlaps it) reads the sub-word before it
    assert representatives([(0, 3), (4, 6)], [(0, 3), (3, 4), (4, 6)]) == [0, 0, 1]
    assert representatives([(0, 0), (0, 2)], [(0, 2)]) == [1]


def test_chunks_group_glued_words():
    text = "  l'EHPAD de Saint-Étienne (Loire).  "
    assert chunks_of(text, split_words(text)) == [("l'EHPAD", 2), ("de", 1), ("Saint-Étienne", 1),
                                                   ("(Loire).", 4)]
    assert chunks_of("", []) == []


def test_long_text_windows_and_over_long_chunks(tiny_bio):
    tok = load_tokenizer(tiny_bio)
    text = " ".join(ODD * 12) + " " + "-".join(["Saint"] * 60) + "." + " fin"
    words = split_words(text)
    from nerkd.data.encode import EncodeStats

    stats = EncodeStats()
    windows = encode_text(TextPieceCache(tok), PieceCache(tok), [text], [words], 32, 8, stats)
    assert stats.split_sentences == 1 and len(windows) > 10
    assert stats.long_chunks == 1 and stats.clipped_words == 1    # the 60-fold "Saint-…" word
    owned = [k for w in windows for k in w.slots[1]]
    assert owned == list(range(len(words)))       # every word owned exactly once, in order
    for w in windows:
        assert len(w.slots[0]) == len(w.slots[1])
        assert len(w.input_ids) <= 32
        assert all(0 < p < len(w.input_ids) - 1 for p in w.slots[0])


@torch.inference_mode()
def test_engine_text_mode_equals_a_plain_forward_on_raw_text(tiny_io_teacher):
    engine = Engine.load(tiny_io_teacher, device="cpu", precision="fp32", tokenize="text", batch_size=4)
    model = NerModel.load(tiny_io_teacher)
    model.eval()
    tok = engine.tokenizer
    texts = texts_of_dev()[:40] + ["", "   "]
    words = [split_words(t) for t in texts]
    scores = engine._launch_scores([[w for w, _, _ in ws] for ws in words], (texts, words))
    got = torch.split(scores.flat, scores.counts)
    for t, g in zip(texts, got, strict=True):
        if not t.strip():
            assert g.shape[0] == 0
            continue
        ids = tok(t)["input_ids"]
        logits = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)).logits[0]
        want = logits[reference_slots(tok, t)]
        assert torch.allclose(g, want, atol=1e-4), t
    # and entities come out with exact offsets in text mode
    for t, ents in zip(texts, engine.predict(texts), strict=True):
        for e in ents:
            assert t[e["start"]:e["end"]] == e["text"]


def test_engine_rejects_unknown_tokenize(tiny_io_teacher):
    from nerkd.errors import SettingsError

    with pytest.raises(SettingsError, match="tokenize"):
        Engine.load(tiny_io_teacher, device="cpu", precision="fp32", tokenize="chars")


def test_cli_tokenize_text_flag_and_setting(runner, in_tmp, tiny_io_teacher):
    import orjson

    from nerkd.cli.app import app

    texts = texts_of_dev()[:20] + [""]
    data = ("\n".join(texts) + "\n").encode()
    want = Engine.load(tiny_io_teacher, device="cpu", precision="fp32", tokenize="text").predict(texts)
    for args in (["--tokenize", "text"], ["--set", "infer.tokenize=text"]):
        res = runner.invoke(app, ["infer", "--model", str(tiny_io_teacher), "--device", "cpu", *args], input=data)
        assert res.exit_code == 0, res.stderr
        assert "sub-words of the raw text" in res.stderr
        lines = [orjson.loads(x) for x in res.stdout.splitlines()]
        assert [x["entities"] for x in lines] == want
    res = runner.invoke(app, ["infer", "--model", str(tiny_io_teacher), "--set", "infer.tokenize=chars"], input=data)
    assert res.exit_code == 1 and "infer.tokenize" in res.stderr


@pytest.mark.parametrize("cache_class", [PieceCache, TextPieceCache])
def test_caches_do_not_warn_about_long_sequences(tiny_bio, cache_class, monkeypatch):
    """The caches tokenise hundreds of words per call; transformers must not warn that the
    sequence is longer than the model's maximum (it is never fed to the model as is)."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    calls = []
    real = PreTrainedTokenizerBase._eventual_warn_about_too_long_sequence

    def spy(self, ids, max_length, verbose):
        calls.append(verbose and len(ids) > self.model_max_length)
        return real(self, ids, max_length, verbose)

    monkeypatch.setattr(PreTrainedTokenizerBase, "_eventual_warn_about_too_long_sequence", spy)
    tok = load_tokenizer(tiny_bio)
    text = " ".join(f"mot{i}x" for i in range(600))
    if cache_class is PieceCache:
        PieceCache(tok).pieces([["a", *text.split()]])
    else:
        TextPieceCache(tok).pieces([(w, False) for w in text.split()])
    assert calls and not any(calls)
    tok(text)   # the check can fail: a plain call would warn
    assert calls[-1]
