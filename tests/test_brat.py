"""BRAT standoff (``.txt`` + ``.ann``) as training and evaluation data (#22 item 13)."""

from __future__ import annotations

import orjson
import pytest

from nerkd.cli.app import app
from nerkd.data.brat import BratStats, iter_brat
from nerkd.data.dataset import label_space_for, read_split, tag_ids
from nerkd.data.readers import detect_format, read_sentences
from nerkd.errors import DataError
from nerkd.settings import load_settings
from nerkd.stages.validate import run_validate
from tests.helpers import DATA

NOTE = "Mme Jeanne Martin vit à Lyon.\n\nSuivi par le CCAS de\nSaint-Étienne demain.\nVu au CHU, puis rentrée.\n"
SECRET = "Jeanne Martin"   # note text: never in an error message


def _at(text: str, surface: str, nth: int = 0) -> tuple[int, int]:
    start = -1
    for _ in range(nth + 1):
        start = text.index(surface, start + 1)
    return start, start + len(surface)


def _t(ident: str, label: str, text: str, *surfaces: str) -> str:
    """A T line for the surfaces (several: a discontinuous entity)."""
    spans = [_at(text, s) for s in surfaces]
    offsets = ";".join(f"{s} {e}" for s, e in spans)
    return f"{ident}\t{label} {offsets}\t{' '.join(text[s:e] for s, e in spans)}\n"


def _ann(text: str = NOTE) -> str:
    return (_t("T1", "PER", text, "Jeanne Martin") + _t("T2", "LOC", text, "Lyon")
            + "A1\tNegation T1\n#1\tAnnotatorNotes T1\tà revoir\n"
            + _t("T3", "ORG", text, "CCAS de", "Saint-Étienne")          # brat's cut at a line break
            + "R1\tLives_in Arg1:T1 Arg2:T2\nE1\tVisit:T2\n*\tEquiv T2 T2\nN1\tReference T2 Wikipedia:1\tLyon\n"
            + _t("T4", "ORG", text, "CHU"))


def _write(folder, name: str, text: str, ann: str | bytes | None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    if ann is not None:
        (folder / f"{name}.ann").write_bytes(ann if isinstance(ann, bytes) else ann.encode("utf-8"))
    return folder / f"{name}.ann"


def test_folder_of_pairs_is_read_like_char_span_jsonl(tmp_path):
    folder = tmp_path / "brat"
    _write(folder, "a", NOTE, _ann())
    _write(folder / "sub", "b", "Appel de M. Petit.\n", _t("T1", "PER", "Appel de M. Petit.\n", "M. Petit"))
    _write(folder, "c", "Pas encore annoté.\n", None)                      # no .ann: skipped, counted
    _write(folder / ".ipynb_checkpoints", "a", NOTE, _ann())               # hidden: left out
    assert detect_format(folder) == "brat"
    sents, stats = read_sentences(folder)
    assert stats.format == "brat"
    assert [(s.tokens, s.tags) for s in sents] == [
        (["Mme", "Jeanne", "Martin", "vit", "à", "Lyon", "."], ["O", "B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
        (["Suivi", "par", "le", "CCAS", "de", "Saint-Étienne", "demain", "."],
         ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]),          # two lines an entity crosses: one sentence
        (["Vu", "au", "CHU", ",", "puis", "rentrée", "."], ["O", "O", "B-ORG", "O", "O", "O", "O"]),
        (["Appel", "de", "M", ".", "Petit", "."], ["O", "O", "B-PER", "I-PER", "I-PER", "O"]),
    ]
    assert sents[1].text == "Suivi par le CCAS de\nSaint-Étienne demain."
    assert all(s.text[a:b] == w for s in sents for w, (a, b) in zip(s.tokens, s.offsets, strict=True))
    assert sents[0].source == str(folder / "a.ann") and sents[3].source == str(folder / "sub/b.ann")
    notes = stats.notes()
    assert "2 BRAT documents" in notes
    assert "1 .txt file without a .ann skipped (not annotated)" in notes
    assert ("annotation lines that are not entities ignored: 1 attributes, 1 equivalences, 1 events, "
            "1 normalisations, 1 notes, 1 relations") in notes
    assert "1 discontinuous entity split only by white space read as one" in notes
    assert "1 line break inside an entity: those lines read as one sentence" in notes
    # the same conventions as the character-span JSONL reader, line by line
    spans = tmp_path / "spans.jsonl"
    lines = [ln for ln in NOTE.replace("de\nSaint", "de Saint").split("\n") if ln]
    ents = [[("Jeanne Martin", "PER"), ("Lyon", "LOC")], [("CCAS de Saint-Étienne", "ORG")], [("CHU", "ORG")]]
    spans.write_bytes(b"\n".join(orjson.dumps({"text": t, "entities": [
        dict(zip(("start", "end"), _at(t, s), strict=True)) | {"label": lab} for s, lab in e]})
        for t, e in zip(lines, ents, strict=True)))
    assert [(s.tokens, s.tags) for s in read_sentences(spans)[0]] == [(s.tokens, s.tags) for s in sents[:3]]


def test_a_pair_is_given_by_its_ann_or_its_txt(tmp_path):
    ann = _write(tmp_path, "note", NOTE, _ann())
    for path in (ann, ann.with_suffix(".txt")):
        assert detect_format(path) == "brat"          # was read as CoNLL, and stopped on a tag
        sents, stats = read_sentences(path)
        assert len(sents) == 3 and stats.notes()[0] == "1 BRAT document"


def test_discontinuous_entity_fragments_are_entities_of_their_own(tmp_path):
    text = "Douleur et gêne thoraciques ce matin.\n"
    ann = _write(tmp_path, "d", text, _t("T1", "PER", text, "Douleur", "thoraciques"))
    stats = BratStats()
    (sent,) = iter_brat(ann, stats)
    assert sent.tags == ["B-PER", "O", "O", "B-PER", "O", "O", "O"]
    assert stats.split == 1 and stats.fragments == 2
    assert "1 discontinuous entity read as 2 entities, one per fragment" in stats.notes()


def test_duplicates_read_once_and_crlf_offsets_count_the_cr(tmp_path):
    text = "Vu à Lyon.\r\nPuis à Nantes.\r\n"
    ann = _t("T1", "LOC", text, "Lyon") + _t("T2", "LOC", text, "Lyon") + _t("T3", "LOC", text, "Nantes")
    sents, stats = read_sentences(_write(tmp_path, "crlf", text, ann))
    assert [s.tags for s in sents] == [["O", "O", "B-LOC", "O"], ["O", "O", "B-LOC", "O"]]
    assert [s.text for s in sents] == ["Vu à Lyon.", "Puis à Nantes."]
    assert "1 entity annotated twice read once" in stats.notes()


def _bad(text, *lines):
    return text, "".join(lines)


T = "Jean Dupont vit à Lyon.\n"
BAD = [   # (.txt, .ann, line named, message)
    (*_bad(T, _t("T1", "PER", T, "Jean Dupont"), "T2\tLOC 18 22\tLyo\n"), 2, "its text differs from the .txt"),
    (*_bad(T, "T1\tPER 0 99\tJean\n"), 1, "out of range for a .txt of 24 characters"),
    (*_bad(T, "T1\tPER 0 x\tJean\n"), 1, "offsets '0 x' of a PER entity are not START END"),
    (*_bad(T, "T1 PER 0 4 Jean\n"), 1, "not a BRAT entity line"),
    (*_bad(T, "\n", "X1\tfoo\n"), 2, "not a BRAT annotation line"),
    (*_bad(T, _t("T1", "PER", T, "Jean Dupont"), _t("T1", "PER", T, "Lyon")), 2, "T1 is defined again (first on "
                                                                                   "line 1)"),
    (*_bad(T, _t("T1", "PER", T, "Jean Dupont"), "A1\tX T1\n", _t("T2", "LOC", T, "Dupont")), 3,
     "T2 (LOC 5-11) overlaps T1 (PER 0-11, line 1): nested or overlapping entities"),
    (*_bad(T, "T1\tPER 4 5\t \n"), 1, "covers only white space"),
    (*_bad(T, "T1\tPER 5 11;0 4\tDupont Jean\n"), 1, "not in order or overlap"),
]


@pytest.mark.parametrize(("text", "ann", "line", "message"), BAD)
def test_bad_ann_names_file_and_line_never_the_text(tmp_path, text, ann, line, message):
    path = _write(tmp_path, "bad", text, ann)
    with pytest.raises(DataError) as err:
        read_sentences(tmp_path)
    assert (err.value.path, err.value.line) == (str(path), line)
    assert message in str(err.value)
    assert "Dupont" not in str(err.value).replace(message, "") and "Lyon" not in str(err.value)


def test_file_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .ann file in this folder"):
        read_sentences(tmp_path / "empty")
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone/x.ann").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"lone/x.ann: no x.txt beside it"):
        read_sentences(tmp_path / "lone")
    _write(tmp_path / "utf", "u", "ok\n", "")
    (tmp_path / "utf/u.txt").write_bytes(f"ok\n{SECRET} \xff\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_sentences(tmp_path / "utf")
    assert str(err.value) == f"{tmp_path / 'utf/u.txt'}:2: invalid UTF-8 (byte 14 of the line)"


def _settings(tmp_path, teacher, *extra: str):
    return load_settings(None, [f"data.train={tmp_path / 'train'}", f"data.dev={tmp_path / 'dev/n.ann'}",
                                f"data.label2id={DATA / 'label2id.json'}", f"teacher.model={teacher}",
                                "student.num_layers=1", "distill.layer_map.teacher=[2]",
                                "distill.layer_map.student=[1]", "train.device=cpu", *extra])


def test_validate_and_the_label_set(tmp_path, tiny_bio, runner, in_tmp):
    dated = NOTE + "Revu le 3 mai.\n"
    _write(tmp_path / "train", "a", dated, _ann(dated) + _t("T9", "DATE", dated, "3 mai"))
    _write(tmp_path / "dev", "n", NOTE, _ann())
    report = run_validate(_settings(tmp_path, tiny_bio))
    fails = [(c.name, c.detail) for c in report.checks if c.status == "fail"]
    # the unknown type names the .ann line of its entity, as the label-set check does for every reader
    assert fails == [("labels train", f"{tmp_path / 'train/a.ann'}:11: unknown tag B-DATE (types not in "
                                      "data.label2id: DATE; 2 tags in this file); drop them with labels.drop: [DATE] "
                                      "or map them with labels.map: {DATE: ...}")]
    fixed = run_validate(_settings(tmp_path, tiny_bio, "labels.drop=[DATE]"))
    assert fixed.ready, [c for c in fixed.checks if c.status == "fail"]
    train = next(c.detail for c in fixed.checks if c.name == "data train")
    assert "4 sentences" in train and ", brat," in train and "2 DATE -> O" in train and "1 BRAT document" in train
    # the splits encode against the label set
    data = _settings(tmp_path, tiny_bio).data
    split = read_split("dev", tmp_path / "dev", data)
    space = label_space_for([split], data)
    ids = tag_ids(split, space)
    assert [space.labels[i] for i in ids[0]] == split.sentences[0].tags
    # and through the command line
    res = runner.invoke(app, ["validate", "--set", f"data.train={tmp_path / 'train'}",
                              "--set", f"data.dev={tmp_path / 'dev/n.ann'}", "--set", "labels.drop=[DATE]",
                              "--set", f"data.label2id={DATA / 'label2id.json'}", "--set", f"teacher.model={tiny_bio}",
                              "--set", "student.num_layers=1", "--set", "distill.layer_map.teacher=[2]",
                              "--set", "distill.layer_map.student=[1]", "--set", "train.device=cpu"])
    assert res.exit_code == 0, res.output
    assert "brat" in res.stdout and SECRET not in res.output


def test_report_scores_a_brat_folder(tmp_path, tiny_bio, runner, in_tmp):
    _write(tmp_path / "dev", "n", NOTE, _ann())
    res = runner.invoke(app, ["report", "--data", str(tmp_path / "dev"), "--model", f"tiny={tiny_bio}", "--output",
                              str(in_tmp / "rep"), "--set", f"data.label2id={DATA / 'label2id.json'}",
                              "--set", "infer.device=cpu"])
    assert res.exit_code == 0, res.output
    scored = orjson.loads((in_tmp / "rep/report.json").read_bytes())
    assert SECRET not in res.output and str(tmp_path / "dev") in orjson.dumps(scored).decode()


def test_resume_sees_a_changed_brat_document(tmp_path):
    """--resume compares the data's content: a BRAT folder's hash covers every .ann and .txt it reads."""
    from nerkd.train.checkpoint import file_hash

    ann = _write(tmp_path / "train", "a", NOTE, _ann())
    before = file_hash(tmp_path / "train")
    assert before != "missing" and file_hash(ann) == file_hash(ann.with_suffix(".txt")) == before
    ann.with_suffix(".txt").write_text(NOTE.replace("demain", "lundi"), encoding="utf-8")
    assert file_hash(tmp_path / "train") != before
