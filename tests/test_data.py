from __future__ import annotations

import orjson
import pytest

from nerkd.data.dataset import data_warnings, label_space_for, load_splits, overlaps, tag_ids
from nerkd.data.encode import bucket_batches, collate, encode, plan_windows
from nerkd.data.labels import LabelSpace, type_mapping
from nerkd.data.readers import read_sentences
from nerkd.data.schemes import convert, detect_scheme, spans_of
from nerkd.data.words import split_words
from nerkd.errors import DataError
from nerkd.settings import load_settings
from tests.helpers import BAD_INPUTS, DATA, GOOD, wordpiece_tokenizer


def test_sample_files_read():
    for name, n in (("train.jsonl", 400), ("dev.jsonl", 80), ("test.jsonl", 80)):
        sents, stats = read_sentences(DATA / name)
        assert stats.sentences == len(sents) >= n
        assert detect_scheme(stats.tags) == "BIO"
    spans, st = read_sentences(DATA / "spans.jsonl")
    assert st.format == "spans" and spans[0].offsets
    for s in spans:  # offsets exact
        assert [s.text[a:b] for a, b in s.offsets] == s.tokens
    conll, st = read_sentences(DATA / "sample.conll")
    assert st.format == "conll" and st.sentences >= 10


def test_conll_three_columns(tmp_path):
    p = tmp_path / "x.conllu"
    p.write_text("0\tMme\tO\n1\tDupont\tB-PER\n\n0\tà\tO\n1\tLyon\tB-LOC\n")
    sents, st = read_sentences(p)
    assert [s.tokens for s in sents] == [["Mme", "Dupont"], ["à", "Lyon"]]
    assert sents[1].line == 4 and st.tokens == 4


def _write(tmp_path, name, content: bytes | str):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_INPUTS)
def test_bad_input_names_file_and_line(tmp_path, name, content, line, message):
    p = _write(tmp_path, name, content)
    with pytest.raises(DataError) as e:
        read_sentences(p)
    assert e.value.line == line
    assert str(e.value).startswith(f"{p}:{line}: ")
    assert message in str(e.value)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.conll", "blank.jsonl"])
def test_empty_file(tmp_path, name):
    p = _write(tmp_path, name, "" if "empty" in name else "\n\n")
    with pytest.raises(DataError, match=r"empty file"):
        read_sentences(p)


def test_empty_sentences_are_counted(tmp_path):
    p = _write(tmp_path, "x.jsonl", GOOD + '{"tokens": [], "tags": []}\n' + GOOD)
    sents, st = read_sentences(p)
    assert len(sents) == 2 and st.skipped_empty == 1


def test_unknown_tag_against_label2id(tmp_path):
    p = _write(tmp_path, "x.jsonl", GOOD + '{"tokens": ["a"], "tags": ["B-DATE"]}\n')
    s = load_settings(None, [f"data.train={p}", f"data.label2id={DATA / 'label2id.json'}"])
    split = load_splits(s.data)["train"]
    space = label_space_for([split], s.data)
    with pytest.raises(DataError, match=rf"{p}:2: unknown tag B-DATE \(types not in data.label2id: DATE; 1 tag in"):
        tag_ids(split, space)


def test_schemes_round_trip():
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    bioes = convert(bio, "BIOES")
    assert bioes == ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    assert convert(bioes, "BIO") == bio
    io = convert(bio, "IO")
    assert io == ["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC", "O", "I-ORG"]
    assert spans_of(convert(io, "BIO")) == [("PER", 0, 2), ("LOC", 3, 6), ("ORG", 7, 8)]  # IO merges touching
    assert detect_scheme(bioes) == "BIOES" and detect_scheme(io) == "IO"


def test_label_space_and_type_mapping(tmp_path):
    space = LabelSpace.from_file(DATA / "label2id.json")
    assert space.scheme == "BIO" and space.types == ["LOC", "ORG", "PER"]
    teacher = LabelSpace(("O", "I-LOC", "I-PER", "I-MISC", "I-ORG"))
    m = type_mapping(teacher, space)
    assert m.shared == ("O", "LOC", "ORG", "PER") and m.teacher_only == ("MISC",)
    assert m.teacher_cols[teacher.label2id["I-MISC"]] == 0       # folded into O
    assert m.student_cols[space.label2id["B-PER"]] == m.student_cols[space.label2id["I-PER"]] == 3
    dropped = type_mapping(teacher, space, teacher_only="ignore")
    assert dropped.teacher_cols[teacher.label2id["I-MISC"]] == -1
    bad = _write(tmp_path, "l.json", '{"O": 0, "B-PER": 2}')
    with pytest.raises(DataError, match="without gaps"):
        LabelSpace.from_file(bad)


def test_french_words_and_offsets():
    text = "Mme Lefèvre 🙂 vit à l'EHPAD de Saint-Étienne aujourd'hui, 12,5 km."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Mme", "Lefèvre", "🙂", "vit", "à", "l'", "EHPAD", "de", "Saint-Étienne",
                                       "aujourd'hui", ",", "12,5", "km", "."]
    assert all(text[s:e] == w for w, s, e in words)


def test_windows_tile_and_never_truncate():
    plan = plan_windows([3] * 10, budget=8, stride=3)
    owned = [w for _, _, s, e in plan for w in range(s, e)]
    assert owned == list(range(10))
    assert all(sum([3] * (e - s)) <= 8 for s, e, _, _ in plan)


def test_encode_alignment_and_split_counts(tiny_bio):
    from nerkd.models.ner import load_tokenizer

    tok = load_tokenizer(tiny_bio)
    sents, _ = read_sentences(DATA / "dev.jsonl")
    words = [s.tokens for s in sents]
    ids = [[1] * len(w) for w in words]
    from nerkd.data.encode import EncodeStats

    stats = EncodeStats()
    windows = encode(tok, words, ids, max_length=16, stride=4, stats=stats)
    assert stats.split_sentences > 0 and stats.windows == len(windows)
    labelled = {(w.sent, i) for w in windows for i in w.word_index if i >= 0}
    assert len(labelled) == sum(len(x) for x in words)            # every word labelled exactly once
    assert sum(lab != -100 for w in windows for lab in w.labels) == len(labelled)
    assert all(len(w) <= 16 for w in windows)
    batches = bucket_batches([len(w) for w in windows], 8, max_tokens=64, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(windows)))
    assert batches == bucket_batches([len(w) for w in windows], 8, max_tokens=64, shuffle=True, seed=3)
    assert all(len(b) * max(len(windows[i]) for i in b) <= 64 or len(b) == 1 for b in batches)
    batch = collate([windows[i] for i in batches[0]], tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape


def test_spans_split_words_inside_entity_boundaries(tmp_path):
    line = {"text": "Chez DupontMartin.", "entities": [{"start": 5, "end": 11, "label": "PER"}]}
    p = _write(tmp_path, "s.jsonl", orjson.dumps(line).decode() + "\n")
    sents, _ = read_sentences(p)
    assert sents[0].tokens == ["Chez", "Dupont", "Martin", "."]
    assert sents[0].tags == ["O", "B-PER", "O", "O"]


@pytest.mark.parametrize("family", ["unigram", "wordpiece"])
def test_piece_cache_equals_the_tokenizer(tiny_bio, family):
    from nerkd.data.encode import PieceCache
    from nerkd.models.ner import load_tokenizer

    sents, _ = read_sentences(DATA / "dev.jsonl")
    words = [s.tokens for s in sents]
    words += [["l'", "EHPAD", "\x00", "😀", "Saint-Étienne", "ÉTÉ", "a"], ["\x00"], ["12,5", "%", "a", "a"]]
    tok = load_tokenizer(tiny_bio) if family == "unigram" else wordpiece_tokenizer([" ".join(w) for w in words])
    cache = PieceCache(tok, max_entries=50)
    for _ in range(2):  # cold, then (partly) cached
        got = cache.pieces(words)
        for ws, pieces in zip(words, got, strict=True):
            enc = tok(ws, is_split_into_words=True, add_special_tokens=False)
            want: list[list[int]] = [[] for _ in ws]
            for t, k in zip(enc["input_ids"], enc.word_ids(), strict=True):
                want[k].append(t)
            assert pieces == [p or [tok.unk_token_id] for p in want], ws
    assert 0 < len(cache.map) <= 50 + len({(w, i == 0) for ws in words for i, w in enumerate(ws)})
    small = PieceCache(tok, max_entries=30)   # one sentence at a time: the cache fills, empties, refills
    for ws in words * 2:
        enc = tok(ws, is_split_into_words=True, add_special_tokens=False)
        want = [[] for _ in ws]
        for t, k in zip(enc["input_ids"], enc.word_ids(), strict=True):
            want[k].append(t)
        assert small.pieces([ws]) == [[p or [tok.unk_token_id] for p in want]]
        assert len(small.map) <= max(30, len(ws))


# -- CoNLL-2003 and other column layouts (#12 item 10) ------------------------------------

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP B-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def test_conll2003_four_space_separated_columns(tmp_path):
    p = _write(tmp_path, "eng.train", CONLL2003)
    sents, st = read_sentences(p)
    assert [s.tokens for s in sents] == [
        ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    assert sents[0].tags == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    assert sents[1].tags == ["B-PER", "I-PER"] and sents[2].tags == ["B-LOC", "O"]
    assert st.docstarts == 2 and st.sentences == 3 and st.tokens == 13
    assert sents[0].line == 3 and sents[0].line_of(2) == 5 and sents[2].line == 18
    assert "2 -DOCSTART- lines skipped" in st.notes()
    tabs, st2 = read_sentences(_write(tmp_path, "eng.tsv", CONLL2003.replace(" ", "\t")))
    assert [s.tokens for s in tabs] == [s.tokens for s in sents] and st2.docstarts == 2


def test_conll_docstart_two_columns_and_mid_sentence(tmp_path):
    p = _write(tmp_path, "x.conll", "-DOCSTART- O\n\nJean B-PER\nvit O\n-DOCSTART- O\nLyon B-LOC\n")
    sents, st = read_sentences(p)
    assert [s.tokens for s in sents] == [["Jean", "vit"], ["Lyon"]]   # a -DOCSTART- line ends a sentence
    assert st.docstarts == 2


def test_conll_three_columns_token_pos_tag(tmp_path):
    """3 columns that do not count tokens are ``token POS tag`` (CoNLL-2002): the token is the first one."""
    p = _write(tmp_path, "x.conll", "Jean NPP B-PER\nvit V O\n\n1990 NUM O\n")
    sents, _ = read_sentences(p)
    assert [s.tokens for s in sents] == [["Jean", "vit"], ["1990"]]
    idx, _ = read_sentences(_write(tmp_path, "y.conll", "1 Jean B-PER\n2 vit O\n\n1 Lyon B-LOC\n"))
    assert [s.tokens for s in idx] == [["Jean", "vit"], ["Lyon"]]


def test_conll_hash_token_is_not_a_comment(tmp_path):
    p = _write(tmp_path, "x.conll", "# sent_id = 1\n# text = # chat\n# O\nchat O\n")
    sents, st = read_sentences(p)
    assert sents[0].tokens == ["#", "chat"] and st.comments == 2


LABEL2ID_PLO = '{"O": 0, "B-LOC": 1, "I-LOC": 2, "B-ORG": 3, "I-ORG": 4, "B-PER": 5, "I-PER": 6}'


def test_unknown_type_error_suggests_drop_and_map(tmp_path):
    p = _write(tmp_path, "x.conll", CONLL2003)
    l2i = _write(tmp_path, "label2id.json", LABEL2ID_PLO)
    s = load_settings(None, [f"data.train={p}", f"data.label2id={l2i}"])
    split = load_splits(s.data)["train"]
    with pytest.raises(DataError) as e:
        tag_ids(split, label_space_for([split], s.data))
    assert str(e.value) == (f"{p}:5: unknown tag B-MISC (types not in data.label2id: MISC; 2 tags in this file); "
                            "drop them with labels.drop: [MISC] or map them with labels.map: {MISC: ...}")


def test_labels_drop_and_map_applied_when_read(tmp_path):
    p = _write(tmp_path, "x.conll", CONLL2003)
    l2i = _write(tmp_path, "label2id.json", LABEL2ID_PLO.replace("PER", "PERSON"))
    s = load_settings(None, [f"data.train={p}", f"data.label2id={l2i}", "labels.drop=[MISC]",
                             "labels.map={PER: PERSON}"])
    split = load_splits(s.data, label_settings=s.labels)["train"]
    assert split.sentences[0].tags == ["B-ORG"] + ["O"] * 8
    assert split.sentences[1].tags == ["B-PERSON", "I-PERSON"]
    assert split.read.relabeled == {"MISC": 2, "PER": 2}
    assert "tags relabelled by labels.drop/labels.map: 2 MISC -> O, 2 PER -> PERSON" in split.read.notes()
    space = label_space_for([split], s.data)
    ids = tag_ids(split, space)
    assert ids[1] == [space.label2id["B-PERSON"], space.label2id["I-PERSON"]]
    # without data.label2id the label space is built from the relabelled types
    s2 = load_settings(None, [f"data.train={p}", "labels.drop=MISC"])
    assert label_space_for(list(load_splits(s2.data, label_settings=s2.labels).values()), s2.data).types == [
        "LOC", "ORG", "PER"]


# -- tags that break their scheme, train/dev overlap (#12 item 9) ---------------------------

def test_invalid_tags_per_scheme():
    from nerkd.data.schemes import invalid_tags

    assert invalid_tags(["O", "I-PER", "B-LOC", "I-LOC", "I-PER"], "BIO") == [1, 4]
    assert invalid_tags(["B-PER", "I-PER", "O", "I-PER"], "IO") == []
    assert invalid_tags(["B-PER", "E-PER", "S-LOC", "O"], "BIOES") == []
    assert invalid_tags(["B-PER", "O", "E-LOC", "B-ORG", "I-ORG"], "BIOES") == [0, 2, 4]


def test_invalid_bio_is_counted_warned_and_read_as_b(tmp_path):
    rows = ['{"tokens": ["a", "b"], "tags": ["B-PER", "O"]}',
            '{"tokens": ["a", "b", "c"], "tags": ["O", "I-PER", "O"]}',
            '{"tokens": ["a", "b"], "tags": ["B-LOC", "I-PER"]}']
    p = _write(tmp_path, "x.jsonl", "\n".join(rows) + "\n")
    s = load_settings(None, [f"data.train={p}", f"data.label2id={DATA / 'label2id.json'}"])
    splits = load_splits(s.data)
    assert data_warnings(splits) == [f"{p}: 2 tags I-X follow O or another type (invalid BIO, read as B-X); "
                                     "first at line 2"]
    space = label_space_for(list(splits.values()), s.data)
    ids = tag_ids(splits["train"], space)
    b_per = space.label2id["B-PER"]
    assert ids[1][1] == b_per and ids[2][1] == b_per     # trained as evaluation reads them


def test_conll_line_of_invalid_tag(tmp_path):
    p = _write(tmp_path, "x.conll", "a B-PER\n\nb O\nc O\nd I-LOC\n")
    _, st = read_sentences(p)
    assert st.warnings() == [f"{p}: 1 tag I-X follows O or another type (invalid BIO, read as B-X); first at line 5"]


def test_io_and_iob1_are_not_warned(tmp_path):
    _, io = read_sentences(_write(tmp_path, "io.conll", "a O\nb I-PER\nc I-PER\n"))
    assert io.warnings() == []
    iob1 = CONLL2003.replace("B-ORG", "I-ORG").replace("B-MISC", "I-MISC").replace("B-PER", "I-PER")
    iob1 = iob1.replace("B-LOC", "I-LOC")
    sents, st = read_sentences(_write(tmp_path, "iob1.conll", iob1.replace("call NN I-NP O", "call NN I-NP B-MISC")))
    assert st.warnings() == [] and st.iob1
    assert any(n.startswith("IOB1 tags") for n in st.notes())
    assert spans_of(sents[0].tags) == [("ORG", 0, 1), ("MISC", 2, 3), ("MISC", 3, 4), ("MISC", 6, 7)]


def test_invalid_bioes_is_warned(tmp_path):
    _, st = read_sentences(_write(tmp_path, "x.conll", "a S-PER\nb B-LOC\nc O\n"))
    assert len(st.warnings()) == 1 and "1 tag breaks BIOES" in st.warnings()[0] and "line 2" in st.warnings()[0]


def test_overlap_between_train_and_dev_test(tmp_path):
    train = _write(tmp_path, "train.jsonl", GOOD + '{"tokens": ["c"], "tags": ["O"]}\n')
    dev = _write(tmp_path, "dev.jsonl", GOOD + GOOD + '{"tokens": ["d"], "tags": ["O"]}\n')
    test = _write(tmp_path, "test.jsonl", '{"tokens": ["e"], "tags": ["O"]}\n')
    s = load_settings(None, [f"data.train={train}", f"data.dev={dev}", f"data.test={test}"])
    splits = load_splits(s.data)
    found = overlaps(splits)
    assert [(o.name, o.count, o.distinct) for o in found] == [("dev", 1, 2)]
    assert found[0].message().startswith(f"1 sentence of {dev} also appears in {train} ")
    assert data_warnings(splits) == [found[0].message()]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_distill_and_finetune_log_data_warnings(in_tmp, runner, tiny_io_teacher, tiny_bio):
    """The overlap and invalid-BIO warnings reach the distill and finetune logs (each run then stops on a
    setting checked after the data is read, to stay fast)."""
    from nerkd.cli.app import app

    train = DATA / "train.jsonl"
    lines = train.read_text(encoding="utf-8").splitlines()
    dev = in_tmp / "dev.jsonl"
    dev.write_text("\n".join(lines[:2]) + '\n{"tokens": ["vu", "Dupont"], "tags": ["O", "I-PER"]}\n', encoding="utf-8")
    data = ["--set", f"data.train={train}", "--set", f"data.dev={dev}", "--set", "data.limit=24",
            "--set", f"data.label2id={DATA / 'label2id.json'}"]
    overlap = f"warning: 2 sentences of {dev} also appear in {train} (2 of its 3 distinct sentences)"
    bio = f"warning: {dev}: 1 tag I-X follows O or another type (invalid BIO, read as B-X); first at line 3"
    res = runner.invoke(app, ["distill", *data, "--set", f"teacher.model={tiny_io_teacher}",
                              "--set", "student.num_layers=2", "--set", "distill.layer_map.teacher=[2,4]",
                              "--set", "distill.layer_map.student=[1,3]", "--output", str(in_tmp / "s")])
    assert res.exit_code == 1 and "distill.layer_map" in res.stderr, res.output
    assert overlap in _flat(res.stderr) and bio in _flat(res.stderr)
    res = runner.invoke(app, ["finetune", "--model", str(tiny_bio), *data, "--set", "data.max_length=4096",
                              "--output", str(in_tmp / "f")])
    assert res.exit_code == 1 and "data.max_length" in res.stderr, res.output
    assert overlap in _flat(res.stderr) and bio in _flat(res.stderr)
