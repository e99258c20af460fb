"""``nerkd infer``: offsets, windows, streaming order, int8, CRF, bad input, CLI."""

from __future__ import annotations

import io
import shutil

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.data.encode import PieceCache, encode
from nerkd.data.textpieces import TextPieceCache, encode_text
from nerkd.data.words import split_words
from nerkd.infer import Engine, read_docs
from nerkd.models.ner import NerOutput

SENTENCE = ("Le 3 mars , Mme Lefèvre et Jean-Pierre Dupont quittent le CHU de Lyon pour l'EHPAD "
            "Les Opalines à Saint-Étienne avec le SSIAD .")
FORCED = {"Lefèvre": ["B-PER"], "Jean-Pierre": ["B-PER"], "Dupont": ["I-PER"], "CHU": ["B-ORG"],
          "Lyon": ["B-LOC"], "EHPAD": ["B-ORG"], "Les": ["B-ORG"], "Opalines": ["I-ORG"],
          "Saint-Étienne": ["B-LOC"], "SSIAD": ["B-ORG"]}


pytestmark = pytest.mark.usefixtures("one_thread")


def load(folder, **kw) -> Engine:
    kw.setdefault("device", "cpu")
    kw.setdefault("precision", "fp32")
    return Engine.load(folder, **kw)


def force(engine: Engine, word_labels: dict[str, list[str]]) -> None:
    """Replace the forward pass by a table lookup: each listed word becomes one added token that
    gets its label (IO models use the I- form), every other token gets O. Context-free on purpose
    (but for a bare "▁", which takes the label of the token after it)."""
    from tokenizers import AddedToken

    tok = engine.tokenizer
    tok.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in word_labels])
    space = engine.space
    l2i = space.label2id
    table = torch.zeros(len(tok), len(space))
    table[:, l2i["O"]] = 5.0
    for word, (label,) in word_labels.items():
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (word, ids)
        if label not in l2i:
            label = "I-" + label.split("-", 1)[1]
        table[ids[0]] = 0.0
        table[ids[0], l2i[label]] = 10.0

    bare = tok.convert_tokens_to_ids("\u2581")   # raw text puts a bare "▁" before an added token: read through it

    def forward(input_ids, attention_mask, output_hidden_states=False):
        after = torch.roll(input_ids, -1, dims=1)
        return NerOutput(table[torch.where(input_ids == bare, after, input_ids)], None)

    engine.model.forward = forward


def check_offsets(text: str, ents: list[dict]) -> None:
    for e in ents:
        assert text[e["start"]:e["end"]] == e["text"]
        assert 0.0 <= e["score"] <= 1.0
        assert "-" not in e["label"]


def test_offsets_accents_emojis(tiny_bio):
    engine = load(tiny_bio)
    force(engine, FORCED)
    text = "Mme Lefèvre 🙂 à Saint-Étienne, l'EHPAD 🙂🙂 Les Opalines."
    (ents,) = engine.predict([text])
    check_offsets(text, ents)
    got = [(e["label"], e["text"], e["start"]) for e in ents]
    assert got == [("PER", "Lefèvre", 4), ("LOC", "Saint-Étienne", 16), ("ORG", "EHPAD", 33),
                   ("ORG", "Les Opalines", 42)]
    assert all(e["score"] > 0.9 for e in ents)


@pytest.mark.parametrize("tokenize", ["words", "text"])
@pytest.mark.parametrize("fixture", ["tiny_io_teacher", "tiny_bio"])
def test_long_text_windows_lose_nothing(fixture, tokenize, request):
    folder = request.getfixturevalue(fixture)
    ref = load(folder, max_length=128, tokenize=tokenize)
    force(ref, FORCED)
    (short,) = ref.predict([SENTENCE])
    assert len(short) >= 6 and ref.encoded.split_sentences == 0
    size = 36   # puts a multi-word entity across a window border in both modes
    engine = load(folder, max_length=size, stride=8, tokenize=tokenize)
    force(engine, FORCED)
    reps = 12
    long_text = " ".join([SENTENCE] * reps)
    (long,) = engine.predict([long_text])
    assert engine.encoded.split_sentences == 1
    assert engine.encoded.windows >= 10
    assert len(engine.tokenizer(long_text)["input_ids"]) > 10 * size
    check_offsets(long_text, long)
    step = len(SENTENCE) + 1
    expected = [(e["label"], e["start"] + k * step, e["end"] + k * step) for k in range(reps) for e in short]
    assert [(e["label"], e["start"], e["end"]) for e in long] == expected
    # some multi-word entities sit across a window border (their words owned by different windows)
    words = split_words(long_text)
    if tokenize == "words":
        windows = encode(engine.tokenizer, [[w for w, _, _ in words]], None, size, 8)
        owner = {i: k for k, win in enumerate(windows) for i in win.word_index if i >= 0}
    else:
        windows = encode_text(TextPieceCache(engine.tokenizer), PieceCache(engine.tokenizer), [long_text],
                              [words], size, 8)
        owner = {i: k for k, win in enumerate(windows) for i in win.slots[1]}
    first = {s: i for i, (_, s, _) in enumerate(words)}
    last = {e: i for i, (_, _, e) in enumerate(words)}
    assert any(owner[first[e["start"]]] != owner[last[e["end"]]] for e in long)


def test_entity_across_window_borders_comes_out_whole(tiny_bio):
    engine = load(tiny_bio, max_length=32, stride=8)
    l2i = engine.space.label2id
    bias = engine.model.encoder_model.classifier.bias
    with torch.no_grad():
        bias.zero_()
        bias[l2i["I-PER"]] = 30.0
        bias[l2i["B-PER"]] = 20.0
    text = " ".join(["Monsieur Dupont à Saint-Étienne ."] * 60)
    (ents,) = engine.predict([text])
    assert engine.encoded.windows >= 10
    words = split_words(text)
    assert ents == [{"start": 0, "end": len(text), "label": "PER", "text": text, "score": ents[0]["score"]}]
    assert len(words) > 10 * 32 // 2


def test_order_preserved_with_batching(tiny_bio):
    engine = load(tiny_bio, batch_size=2)
    force(engine, FORCED)
    texts = [SENTENCE, "", "Lyon", SENTENCE + " " + SENTENCE, "   ", "Mme Lefèvre", "pas d'entité ici",
             "Saint-Étienne " * 30, "CHU"]
    out = io.BytesIO()
    docs = read_docs(io.BytesIO("\n".join(texts).encode() + b"\n"), "mem", "text")
    stats = engine.run(docs, out.write, chunk_size=3)
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [x["text"] for x in lines] == texts
    assert [x["entities"] for x in lines] == [engine.predict([t])[0] for t in texts]
    assert stats.docs == len(texts) and stats.empty == 2
    assert lines[1]["entities"] == [] and lines[4]["entities"] == []


def test_int8_on_cpu(tiny_bio):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    from nerkd.models.ner import NerModel, load_tokenizer

    fp32, int8 = load(tiny_bio), load(tiny_bio, int8=True)
    assert any(isinstance(m, QLinear) for m in int8.model.modules())
    assert not any(isinstance(m, QLinear) for m in fp32.model.modules())
    assert int8.num_parameters == fp32.num_parameters
    texts = [SENTENCE, "Mme Lefèvre 🙂 à Saint-Étienne", ""]
    got = int8.predict(texts)
    for text, ents in zip(texts, got, strict=True):
        check_offsets(text, ents)
    assert got[2] == []
    # a classifier bias that dominates: int8 and fp32 must then agree exactly on the spans
    engines = []
    for q in (False, True):
        model = NerModel.load(tiny_bio)
        with torch.no_grad():
            model.encoder_model.classifier.bias[model.labels.label2id["B-LOC"]] = 40.0
        engines.append(Engine(model, load_tokenizer(tiny_bio), int8=q))
    a, b = (e.predict(texts) for e in engines)
    strip = [[(e["start"], e["end"], e["label"]) for e in ents] for ents in a]
    assert strip == [[(e["start"], e["end"], e["label"]) for e in ents] for ents in b]
    assert len(strip[0]) == len(split_words(SENTENCE))


def test_int8_rejected_on_cuda(tiny_bio):
    from nerkd.errors import SettingsError
    from nerkd.models.ner import NerModel, load_tokenizer

    with pytest.raises(SettingsError, match="CPU only"):
        Engine(NerModel.load(tiny_bio), load_tokenizer(tiny_bio), device=torch.device("cuda"), int8=True)


def test_crf_decoding_path(tiny_crf):
    engine = load(tiny_crf)
    assert engine.decoder.crf is engine.model.crf and not engine.free
    l2i = engine.space.label2id
    crf = engine.model.crf
    with torch.no_grad():
        crf.start_transitions.fill_(-50.0)
        crf.start_transitions[l2i["B-ORG"]] = 50.0
        crf.transitions.fill_(-50.0)
        crf.transitions[l2i["B-ORG"], l2i["I-ORG"]] = 50.0
        crf.transitions[l2i["I-ORG"], l2i["I-ORG"]] = 50.0
    text = "Le CCAS de Roubaix appelle Madame Pham ."
    (ents,) = engine.predict([text])
    assert [(e["label"], e["text"]) for e in ents] == [("ORG", text)]


def test_constrained_decoding_never_starts_with_inside(tiny_bio):
    engine = load(tiny_bio)
    assert engine.decoder.crf is None and engine.space.scheme == "BIO"
    # the forced scores' own best tags are O I-PER O I-LOC: an argmax would start both entities with I-
    force(engine, {"Dupont": ["I-PER"], "Lyon": ["I-LOC"]})
    ((tags, _),) = engine.tag_words([["le", "Dupont", "de", "Lyon"]])
    # BIO allows I-X only after B-X or I-X. The best valid path keeps each sure I-X (log-prob ~0) and pays ~5 for
    # B-X on the word before (O scored 5, the rest 0), rather than ~10 for replacing I-X by O or B-X
    assert tags == ["B-PER", "I-PER", "B-LOC", "I-LOC"]


# -- CLI ---------------------------------------------------------------------------------
def invoke(runner, args, **kw):
    return runner.invoke(app, ["infer", *args], **kw)


def test_cli_text_stdin_stdout(runner, in_tmp, tiny_bio):
    data = "Mme Lefèvre à Saint-Étienne\n\nLe SSIAD de Lyon\n"
    res = invoke(runner, ["--model", str(tiny_bio)], input=data.encode())
    assert res.exit_code == 0, res.stderr
    lines = [orjson.loads(x) for x in res.stdout.splitlines()]
    assert [x["text"] for x in lines] == ["Mme Lefèvre à Saint-Étienne", "", "Le SSIAD de Lyon"]
    assert lines[1] == {"text": "", "entities": []}
    for x in lines:
        check_offsets(x["text"], x["entities"])
    assert "3 docs" in res.stderr and "words/s" in res.stderr


def test_cli_jsonl_ids_round_trip(runner, in_tmp, tiny_bio):
    rows = [{"id": "a-1", "text": "Mme Lefèvre"}, {"id": 7, "text": "à Lyon"}, {"text": "sans id"}]
    src = in_tmp / "in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    res = invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out/res.jsonl"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    lines = [orjson.loads(x) for x in (in_tmp / "out/res.jsonl").read_bytes().splitlines()]
    assert [x.get("id", None) for x in lines] == ["a-1", 7, None]
    assert "id" not in lines[2] and [x["text"] for x in lines] == [r["text"] for r in rows]


@pytest.mark.parametrize("bad, message", [
    (b"ligne un\nligne deux\n\xff\xfe pas utf8\nligne quatre\n", "not valid UTF-8"),
    (b'{"id": 1, "text": "un"}\n{"id": 2, "text": "deux"}\n{"id": 3, text}\n{"id": 4, "text": "x"}\n',
     "invalid JSON"),
    (b'{"id": 1, "text": "un"}\n{"id": 2, "text": "deux"}\n{"id": 3}\n', 'missing "text"'),
])
def test_cli_bad_input_line_3(runner, in_tmp, tiny_bio, bad, message):
    src = in_tmp / "bad.txt"
    src.write_bytes(bad)
    res = invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out.jsonl"])
    assert res.exit_code == 1
    errors = [x for x in res.stderr.splitlines() if "error" in x]
    assert len(errors) == 1 and f"{src}:3:" in errors[0] and message in errors[0]
    assert "Traceback" not in res.stderr
    written = [orjson.loads(x) for x in (in_tmp / "out.jsonl").read_bytes().splitlines()]
    assert [x["text"] for x in written] == ["ligne un", "ligne deux"] if b"ligne" in bad else ["un", "deux"]
    res = invoke(runner, ["--model", str(tiny_bio)], input=bad)
    assert res.exit_code == 1 and "<stdin>:3:" in res.stderr
    assert len(res.stdout.splitlines()) == 2


def test_cli_default_model_and_help(runner, in_tmp, tiny_bio):
    res = invoke(runner, [], input=b"Lyon\n")
    assert res.exit_code == 1 and "no model" in res.stderr
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "final")
    res = invoke(runner, ["--int8", "--no-progress"], input="Mme Lefèvre\n".encode())
    assert res.exit_code == 0, res.stderr
    assert "artifacts/final" in res.stderr and "int8" in res.stderr
    assert orjson.loads(res.stdout)["text"] == "Mme Lefèvre"
    res = invoke(runner, ["--help"])
    assert "Example:" in res.stdout and "nerkd infer --" in res.stdout


def test_cli_long_text_is_windowed(runner, in_tmp, tiny_bio):
    text = " ".join(["Madame Pham quitte l'EHPAD de Saint-Étienne ."] * 80)
    res = invoke(runner, ["--model", str(tiny_bio), "--set", "data.max_length=32", "--set", "data.stride=8"],
                 input=(text + "\n").encode())
    assert res.exit_code == 0, res.stderr
    assert orjson.loads(res.stdout)["text"] == text
    assert "1 long texts split" in res.stderr


@pytest.mark.parametrize("score", ["mean", "min"])
def test_io_entities_equal_entities_of(score):
    from nerkd.infer.spans import entities_of, io_entities

    labels = ["O", "I-LOC", "I-PER", "I-MISC", "I-ORG"]
    gen = torch.Generator().manual_seed(0)
    texts = [SENTENCE, "", "Lyon", "Mme Lefèvre à Saint-Étienne", SENTENCE + " " + SENTENCE, "   "]
    words = [split_words(t) for t in texts]
    counts = [len(w) for w in words]
    for _ in range(20):
        ids = torch.randint(0, len(labels), (sum(counts),), generator=gen)
        ids[torch.rand(len(ids), generator=gen) < 0.5] = 0
        probs = torch.rand(len(ids), generator=gen)
        got = io_entities(texts, words, counts, ids, probs, labels, score)
        at, want = 0, []
        for t, ws, n in zip(texts, words, counts, strict=True):
            want.append(entities_of(t, ws, [labels[i] for i in ids[at: at + n].tolist()],
                                    probs[at: at + n].tolist(), score))
            at += n
        assert got == want


def test_overlap_pipeline_keeps_order_and_writes_before_an_error(tiny_io_teacher):
    """The CUDA path (chunk k+1 queued before chunk k is decoded), run on CPU: same output, same
    order, and a bad line still comes after every earlier line was written."""
    from nerkd.errors import DataError

    plain = load(tiny_io_teacher, batch_size=2)
    piped = load(tiny_io_teacher, batch_size=2, overlap=True, chunk_size=2)
    texts = [SENTENCE, "", "Lyon", "Mme Lefèvre", "pas d'entité ici", "Saint-Étienne " * 30, "CHU"]
    assert piped.predict(texts) == plain.predict(texts) == [plain.predict([t])[0] for t in texts]
    out = io.BytesIO()
    bad = ("\n".join(texts[:5]) + "\n").encode() + b"\xff\n" + b"apres\n"
    with pytest.raises(DataError, match="mem:6"):
        piped.run(read_docs(io.BytesIO(bad), "mem", "text"), out.write, chunk_size=2)
    assert [orjson.loads(x)["text"] for x in out.getvalue().splitlines()] == texts[:5]


def test_cpu_batches_are_capped_by_padded_tokens(tiny_io_teacher, monkeypatch):
    from nerkd.infer import engine as engine_mod

    assert load(tiny_io_teacher).max_tokens == engine_mod.CPU_MAX_TOKENS
    assert load(tiny_io_teacher, max_tokens=0).max_tokens is None
    engine = load(tiny_io_teacher, batch_size=64, max_tokens=40)
    shapes = []
    forward = engine.model.forward

    def spy(input_ids, attention_mask, output_hidden_states=False):
        shapes.append(tuple(input_ids.shape))
        return forward(input_ids, attention_mask)

    monkeypatch.setattr(engine.model, "forward", spy)
    texts = [SENTENCE[: 10 * k] for k in range(1, 12)]
    assert engine.predict(texts) == load(tiny_io_teacher, max_tokens=0).predict(texts)
    assert len(shapes) > 1 and all(r * w <= 40 or r == 1 for r, w in shapes)


def test_compiled_engine_matches_eager(tiny_io_teacher):
    """``--compile`` (torch.compile, weights frozen on CPU) gives the eager engine's logits and
    entities, over batches of several shapes; ``--compile --int8`` is refused."""
    from nerkd.errors import SettingsError

    texts = [SENTENCE, "Mme Lefèvre à Lyon .", "", "Le SSIAD " * 20, "x"] * 3
    words = [[w for w, _, _ in split_words(t)] for t in texts]
    eager = load(tiny_io_teacher, batch_size=4)
    compiled = load(tiny_io_teacher, batch_size=4, compile=True)
    assert compiled.compiled and not eager.compiled
    for a, b in zip(eager.word_scores(words), compiled.word_scores(words), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    assert compiled.predict(texts) == eager.predict(texts)
    with pytest.raises(SettingsError, match="compile"):
        load(tiny_io_teacher, compile=True, int8=True)


@pytest.mark.parametrize("labels", [["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
                                    ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-ORG", "I-ORG", "E-ORG", "S-ORG"]])
def test_valid_argmax_shortcut_is_viterbis_answer(labels):
    """Without a CRF, a valid argmax path is returned as it is (no valid path scores more): the same tags as the
    constrained Viterbi pass, on random scores of which some argmax paths are valid and some are not."""
    from nerkd.data.labels import LabelSpace
    from nerkd.models.decode import Decoder, viterbi

    decoder = Decoder(LabelSpace(labels))
    gen = torch.Generator().manual_seed(0)
    shortcut = 0
    for n in [1, 2, 3, 5, 8, 13] * 40:
        scores = torch.randn(n, len(labels), generator=gen) * 3
        scores[:, 0] += torch.rand(n, generator=gen) * 4   # mostly O, as in real notes
        full = viterbi(torch.log_softmax(scores, -1), decoder.start, decoder.trans, decoder.end)
        assert decoder(scores) == full
        ids = scores.argmax(-1).tolist()
        shortcut += ids == full
    assert 20 < shortcut < 240   # both paths of the decoder were taken
