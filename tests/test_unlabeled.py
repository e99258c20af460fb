"""The unlabelled transfer set (#10 item 1, data side): reading, hygiene, streaming, sampling, windows, settings."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from nerkd.data import unlabeled as U
from nerkd.data.encode import IGNORE, EncodeStats
from nerkd.errors import DataError, SettingsError
from nerkd.infer.io import detokenize
from nerkd.settings import load_settings
from tests.helpers import DATA


def _gold(name: str) -> list[list[str]]:
    return [orjson.loads(line)["tokens"] for line in (DATA / name).read_bytes().splitlines() if line.strip()]


def _write(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _note(i: int) -> str:
    return f"Note {i} : visite à domicile de Mme Martin{i} avec le CCAS de Lyon."


# ------------------------------------------------------------------------------------------------ hygiene


def test_leak_filter_counts_dev_and_test_sentences_detokenised_differently(tmp_path):
    dev, test = _gold("dev.jsonl"), _gold("test.jsonl")
    notes = (DATA / "unlabeled.txt").read_text(encoding="utf-8").splitlines()
    base = U.scan_unlabeled(_write(tmp_path / "base.txt", notes), {"dev": dev, "test": test})
    assert base.summary.leaked == {"dev": 0, "test": 0}   # the committed set is clean
    d = [dev[0], dev[1], dev[2]]
    t = [test[0], test[1]]
    assert all(len(s) >= U.EMBED_MIN_WORDS for s in d + t)
    hidden = [
        detokenize(d[0]),                                        # "M. Gauthier ... l'Hôpital ... Perpignan."
        "  " + " ".join(d[1]) + " ",                             # the gold tokens as a whole line, spaces around
        "Appel reçu ce matin. " + detokenize(d[2]) + " Rappeler lundi.",   # inside a longer note
        detokenize(t[0]).replace("'", "\u2019"),                  # typographic apostrophes
        "\t".join(t[1]),                                         # tab-separated
    ]
    near_miss = detokenize(d[0]).replace("Perpignan", "Narbonne")   # one word differs: not a leak
    short = "Appel reçu. " + "Oui." + " Rappeler."                  # short sentences are matched whole only
    lines = notes[:100] + hidden[:2] + notes[100:300] + hidden[2:] + [near_miss, short] + notes[300:]
    idx = U.scan_unlabeled(_write(tmp_path / "u.txt", lines),
                           {"dev": dev + [["Oui", "."]], "test": test})
    s = idx.summary
    assert s.leaked == {"dev": 3, "test": 2}
    assert s.dropped_leaking == 5
    assert s.first_leak == {"dev": 101, "test": 304}
    assert s.texts == base.summary.texts + 2                     # the near miss and the short note are kept
    kept = [t.text for t in idx.iter_kept()]
    assert near_miss in kept and short in kept and not set(hidden) & set(kept)
    assert "3 dropped as in dev (first at line 101)" in s.describe()
    assert "2 dropped as in test (first at line 304)" in s.describe()


def test_a_text_in_both_splits_counts_once_for_the_first(tmp_path):
    sent = ["Rendez-vous", "à", "la", "CAF", "de", "Lille", "."]
    idx = U.scan_unlabeled(_write(tmp_path / "u.txt", [detokenize(sent), _note(1)]),
                           {"dev": [sent], "test": [sent]})
    assert idx.summary.leaked == {"dev": 1, "test": 0} and idx.summary.texts == 1


def test_duplicates_and_empty_lines_are_dropped_and_counted(tmp_path):
    lines = [_note(1), "", _note(2), "   ", _note(1), " " + _note(2).replace(" : ", "  :  "), _note(3), "", _note(1)]
    idx = U.scan_unlabeled(_write(tmp_path / "u.txt", lines))
    s = idx.summary
    assert (s.texts, s.duplicates, s.empty, s.lines) == (3, 3, 3, 9)
    assert [(t.ordinal, t.line) for t in idx.iter_kept()] == [(0, 1), (1, 3), (2, 7)]   # first occurrences kept
    assert s.words == 3 * len(U.split_words(_note(1)))
    assert "3 empty lines skipped, 3 duplicates dropped" in s.describe()


def test_plain_and_jsonl_give_the_same_texts_and_words(tmp_path):
    texts = ["L'assistante sociale de l'EHPAD a appelé.", "Visite de M. Dupont à Saint-Étienne le 12,5."]
    plain = U.scan_unlabeled(_write(tmp_path / "u.txt", texts))
    jsonl = U.scan_unlabeled(_write(tmp_path / "u.jsonl", [
        "", orjson.dumps({"id": 7, "text": texts[0]}).decode(), "", orjson.dumps({"text": texts[1]}).decode(),
        orjson.dumps({"text": "  "}).decode()]))
    assert (plain.format, jsonl.format) == ("text", "jsonl")
    a, b = list(plain.iter_kept()), list(jsonl.iter_kept())
    assert [t.text for t in a] == [t.text for t in b] == texts
    assert [t.line for t in b] == [2, 4]
    assert a[0].words == ["L'", "assistante", "sociale", "de", "l'", "EHPAD", "a", "appelé", "."]
    assert "Saint-Étienne" in a[1].words and "12,5" in a[1].words
    assert jsonl.summary.empty == 3 and jsonl.summary.words == plain.summary.words


@pytest.mark.parametrize("content, line, what", [
    (b"bonjour\nencore\n\xff\xfe oups\n", 3, "not valid UTF-8"),
    (b'{"text": "a"}\n{"text": "b"\n', 2, "invalid JSON"),
    (b'{"text": "a"}\n\n{"id": 3}\n', 3, 'missing "text"'),
    (b'{"text": "a"}\n[1, 2]\n', 2, "expected a JSON object"),
])
def test_a_bad_line_names_file_and_line(tmp_path, content, line, what):
    path = tmp_path / "u.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        U.summarize_unlabeled(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and what in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        U.scan_unlabeled(tmp_path / "nope.txt")


def test_max_texts_caps_the_kept_texts_and_stops_reading(tmp_path):
    lines = [_note(1), _note(1), _note(2), "", _note(3), _note(4)]
    path = tmp_path / "u.txt"
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\n")          # a bad line 7, never reached
    s = U.scan_unlabeled(path, max_texts=3).summary
    assert (s.texts, s.duplicates, s.empty, s.capped, s.lines) == (3, 1, 1, True, 5)
    assert "capped at 3 texts, 5 lines read" in s.describe()
    with pytest.raises(DataError, match=":7: "):
        U.scan_unlabeled(path)


# ------------------------------------------------------------------------------------------------ windows


@pytest.fixture(scope="module")
def tokenizer(tiny_bio):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bio)


def test_long_text_is_windowed_with_every_word_owned_once(tmp_path, tokenizer):
    long_text = " ".join(f"Madame Durand{i} rencontre l'équipe du CCAS de Villeurbanne." for i in range(40))
    idx = U.scan_unlabeled(_write(tmp_path / "u.txt", [_note(1), long_text, _note(2)]))
    texts = list(idx.iter_kept())
    stats = EncodeStats()
    windows = U.encode_texts(tokenizer, texts, 32, 8, stats)
    assert stats.split_sentences == 1 and stats.sentences == 3 and stats.windows == len(windows) > 3
    for i, t in enumerate(texts):
        owned = sorted(k for w in windows if w.sent == i for k in w.word_index if k >= 0)
        assert owned == list(range(len(t.words)))               # nothing lost, nothing twice
    assert all(lab == IGNORE for w in windows for lab in w.labels)  # no CE / CRF target anywhere
    assert all(len(w) <= 32 for w in windows)
    s = U.summarize_unlabeled(tmp_path / "u.txt", tokenizer=tokenizer, max_length=32, stride=8)
    assert (s.windows, s.split_texts) == (len(windows), 1)
    assert f"{len(windows)} windows, 1 long texts split" in s.describe()


# ------------------------------------------------------------------------------------------------ sampling


@pytest.fixture
def set_of_23(tmp_path):
    lines = []
    for i in range(23):
        lines.append(_note(i))
        if i % 5 == 0:
            lines.append("")
    return U.scan_unlabeled(_write(tmp_path / "u.txt", lines), chunk=4)


def test_sampler_cycles_through_every_text_once_per_pass(set_of_23):
    sampler = U.EpochSampler(set_of_23, seed=3)
    got = [t.ordinal for t in sampler.take(23 * 3 + 5)]
    for p in range(3):
        assert sorted(got[23 * p: 23 * (p + 1)]) == list(range(23))
    assert got[:23] != list(range(23))                          # shuffled
    assert got[:23] != got[23:46]                                # a new order each pass
    assert sampler.consumed == 74 and sampler.passes == pytest.approx(74 / 23)
    plain = U.EpochSampler(set_of_23, shuffle=False).take(30)
    assert [t.ordinal for t in plain] == list(range(23)) + list(range(7))
    assert [t.text for t in plain[:2]] == [_note(0), _note(1)] and plain[1].line == 3


def test_sampler_is_deterministic_and_resumes_from_its_state(set_of_23):
    a, b = U.EpochSampler(set_of_23, seed=7), U.EpochSampler(set_of_23, seed=7)
    epochs_a = [[t.ordinal for t in a.take(9)] for _ in range(6)]
    first_two = [[t.ordinal for t in b.take(9)] for _ in range(2)]
    assert first_two == epochs_a[:2]
    state = orjson.loads(orjson.dumps(b.state_dict()))            # small, serialisable
    assert state["consumed"] == 18
    c = U.EpochSampler(set_of_23, seed=7)
    c.load_state_dict(state)
    assert [[t.ordinal for t in c.take(9)] for _ in range(4)] == epochs_a[2:]
    assert [t.ordinal for t in c.texts(18, 9)] == epochs_a[2] and c.consumed == 54   # texts() keeps the state
    other = U.EpochSampler(set_of_23, seed=8)
    assert [t.ordinal for t in other.take(9)] != epochs_a[0]
    with pytest.raises(DataError, match="seed"):
        other.load_state_dict(state)


def test_sampler_refuses_a_changed_set(tmp_path, set_of_23):
    state = U.EpochSampler(set_of_23, seed=1).state_dict()
    shorter = U.scan_unlabeled(_write(tmp_path / "v.txt", [_note(i) for i in range(20)]), chunk=4)
    with pytest.raises(DataError, match="texts: 23 then, 20 now"):
        U.EpochSampler(shorter, seed=1).load_state_dict(state)


def test_a_set_with_nothing_left_is_an_error(tmp_path):
    sent = ["Visite", "de", "Mme", "Roux", "à", "Nantes", "."]
    idx = U.scan_unlabeled(_write(tmp_path / "u.txt", ["", detokenize(sent)]), {"dev": [sent]})
    with pytest.raises(DataError, match=r"no usable text \(1 empty lines, 0 duplicates, 1 dropped as in dev/test\)"):
        U.EpochSampler(idx)


# ------------------------------------------------------------------------------------------------ streaming


def test_texts_are_read_lazily(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes(b"".join(_note(i).encode() + b"\n" for i in range(1000)) + b"\xff\n")
    it = U.iter_texts(path)
    first = [next(it) for _ in range(10)]                        # the bad line 1001 is not read yet
    assert [d.line for d in first] == list(range(1, 11)) and first[3].text == _note(3)
    with pytest.raises(DataError, match=":1001: "):
        list(it)


def test_sampler_reads_one_chunk_not_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path / "u.txt", [_note(i) for i in range(2000)])
    idx = U.scan_unlabeled(path, chunk=16)
    read = []
    real = U.read_docs

    def counting(*args, **kwargs):
        for doc in real(*args, **kwargs):
            read.append(doc.line)
            yield doc

    monkeypatch.setattr(U, "read_docs", counting)
    sampler = U.EpochSampler(idx, seed=0)
    got = sampler.take(5)
    assert len(read) <= 16 and len(got) == 5
    start = got[0].ordinal // 16 * 16                             # the chunk served first, read from its offset
    assert [t.text for t in got] == [_note(k) for k in (t.ordinal for t in got)]
    assert all(start <= t.ordinal < start + 16 for t in got)


def test_scan_does_not_hold_the_file(tmp_path):
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as fh:
        sentence = "Visite de Mme Martin au CCAS de Lyon, entretien avec l'assistante sociale. "
        for i in range(1000):
            fh.write(f"{i} " + sentence * 14 + "\n")
    assert path.stat().st_size > 1_000_000
    tracemalloc.start()
    try:
        idx = U.scan_unlabeled(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert idx.summary.texts == 1000
    assert peak < 300_000, peak                                   # a few lines and the digests, not 1 MB of text


# ------------------------------------------------------------------------------------------------ settings


def test_unlabeled_settings_defaults_and_overrides():
    s = load_settings()
    assert s.data.unlabeled is None
    d = s.distill
    assert (d.unlabeled_ratio, d.unlabeled_weight, d.unlabeled_max, d.cache_teacher) == (1.0, 1.0, None, False)
    s = load_settings(overrides=["data.unlabeled=notes.txt", "distill.unlabeled_ratio=0", "distill.unlabeled_max=50",
                                 "distill.unlabeled_weight=0.5", "distill.cache_teacher=true"])
    assert s.data.unlabeled == "notes.txt"
    assert (s.distill.unlabeled_ratio, s.distill.unlabeled_weight, s.distill.unlabeled_max) == (0, 0.5, 50)
    assert s.distill.cache_teacher is True


@pytest.mark.parametrize("pair, key", [
    ("distill.unlabeled_ratio=-0.5", "distill.unlabeled_ratio"),
    ("distill.unlabeled_weight=-1", "distill.unlabeled_weight"),
    ("distill.unlabeled_max=0", "distill.unlabeled_max"),
    ("distill.cache_teacher=maybe", "distill.cache_teacher"),
])
def test_unlabeled_settings_range_errors(pair, key):
    with pytest.raises(SettingsError, match=f"--set: setting {key}: "):
        load_settings(overrides=[pair])


def test_transfer_set_from_settings(in_tmp):
    from nerkd.data.dataset import load_splits

    dev = _gold("dev.jsonl")
    _write(in_tmp / "u.txt", [_note(1), detokenize(dev[5]), _note(2), _note(3), _note(1)])
    s = load_settings(overrides=[f"data.dev={DATA / 'dev.jsonl'}", f"data.test={DATA / 'test.jsonl'}"])
    splits = load_splits(s.data, ("dev", "test"))
    assert U.transfer_set(s, splits) is None                     # data.unlabeled not set
    s = load_settings(overrides=[f"data.dev={DATA / 'dev.jsonl'}", f"data.test={DATA / 'test.jsonl'}",
                                 "data.unlabeled=u.txt", "distill.unlabeled_max=2"])
    summary = U.transfer_set(s, splits).summary
    assert (summary.texts, summary.leaked, summary.duplicates, summary.capped) == (2, {"dev": 1, "test": 0}, 0, True)


def test_texts_per_epoch():
    assert U.texts_per_epoch(1.0, 400) == 400
    assert U.texts_per_epoch(2.5, 41) == 103                     # 102.5 rounded half up
    assert U.texts_per_epoch(0, 400) == 0 and U.texts_per_epoch(1.0, 0) == 0
    assert U.texts_per_epoch(0.001, 10) == 1                     # a positive ratio takes something
