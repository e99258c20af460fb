"""Errors in context (issue #22 item 23): error records of hand-made sentences, confusion counts, the
seeded choice of sentences, the escaped HTML and fenced Markdown, and the section in a real report."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from nerkd.report.errors import ErrorRecord, by_kind, classify, confusion, model_errors, pick

TEST = Path(__file__).resolve().parents[1] / "data" / "test.jsonl"


# -- classify: one hand-made case per kind -------------------------------------------------------

CASES = [
    # gold spans, predicted spans, expected (kind, label, gold, pred) records
    ("exact", [("PER", 0, 2), ("LOC", 4, 5)], [("PER", 0, 2), ("LOC", 4, 5)], []),
    ("wrong type", [("LOC", 3, 4)], [("ORG", 3, 4)],
     [("wrong_type", "LOC→ORG", ("LOC", 3, 4), ("ORG", 3, 4))]),
    # "Centre Hospitalier Lyon" gold ORG, "Hospitalier Lyon" predicted: inside the gold entity
    ("too short", [("ORG", 0, 3)], [("ORG", 1, 3)], [("boundary", "ORG too short", ("ORG", 0, 3), ("ORG", 1, 3))]),
    # "Dr Martin" predicted where the gold PER is "Martin": covers it
    ("too long", [("PER", 1, 2)], [("PER", 0, 2)], [("boundary", "PER too long", ("PER", 1, 2), ("PER", 0, 2))]),
    ("shifted", [("LOC", 2, 4)], [("LOC", 3, 5)], [("boundary", "LOC shifted", ("LOC", 2, 4), ("LOC", 3, 5))]),
    ("type and borders", [("LOC", 0, 2)], [("ORG", 0, 3)],
     [("type_boundary", "LOC→ORG, too long", ("LOC", 0, 2), ("ORG", 0, 3))]),
    ("missed, spurious", [("PER", 0, 1)], [("LOC", 5, 6)],
     [("missed", "missed PER", ("PER", 0, 1), None), ("spurious", "spurious LOC", None, ("LOC", 5, 6))]),
    # one gold PER over words 0-2 predicted as two PERs (0 and 2): overlaps tie (1 word each), the leftmost
    # is paired (too short), the other is left over (spurious)
    ("split", [("PER", 0, 3)], [("PER", 0, 1), ("PER", 2, 3)],
     [("boundary", "PER too short", ("PER", 0, 3), ("PER", 0, 1)), ("spurious", "spurious PER", None, ("PER", 2, 3))]),
    # two gold PERs (0, 1-2) predicted as one PER over 0-2: paired with the larger overlap (1-2, 2 words);
    # the first gold PER is left over (missed), listed first (it starts at word 0 and ends first)
    ("merge", [("PER", 0, 1), ("PER", 1, 3)], [("PER", 0, 3)],
     [("missed", "missed PER", ("PER", 0, 1), None), ("boundary", "PER too long", ("PER", 1, 3), ("PER", 0, 3))]),
    ("nothing predicted", [("ORG", 2, 4)], [], [("missed", "missed ORG", ("ORG", 2, 4), None)]),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(gold, pred, expected):
    assert classify(gold, pred) == [ErrorRecord(*e) for e in expected]


def test_confusion_and_kinds_over_the_cases():
    records = [r for _, gold, pred, _ in CASES for r in classify(gold, pred)]
    # worked out from CASES: missed PER twice (missed, spurious; merge), PER too short (split) and PER too long
    # (too long; merge) twice each, the rest once
    assert list(confusion(records).items()) == [  # most frequent first, then by label
        ("PER too long", 2), ("missed PER", 2), ("LOC shifted", 1), ("LOC→ORG", 1), ("LOC→ORG, too long", 1),
        ("ORG too short", 1), ("PER too short", 1), ("missed ORG", 1), ("spurious LOC", 1), ("spurious PER", 1)]
    assert by_kind(records) == {"missed": 3, "spurious": 2, "wrong_type": 1, "boundary": 5, "type_boundary": 1}


def test_records_account_for_seqeval_counts():
    """Records with a gold entity = seqeval's false negatives; with a predicted entity = its false positives."""
    from nerkd.data.schemes import tags_from_spans
    from nerkd.metrics import evaluate

    gold_tags = [tags_from_spans(6, gold, "BIO") for _, gold, _, _ in CASES]
    pred_tags = [tags_from_spans(6, pred, "BIO") for _, _, pred, _ in CASES]
    n_gold = sum(len(g) for _, g, _, _ in CASES)   # 12
    n_pred = sum(len(p) for _, _, p, _ in CASES)   # 11
    tp = 2                                          # the two entities of the "exact" case
    scores = evaluate(gold_tags, pred_tags)
    assert scores["recall"] == pytest.approx(tp / n_gold) and scores["precision"] == pytest.approx(tp / n_pred)
    records = [r for _, gold, pred, _ in CASES for r in classify(gold, pred)]
    assert sum(r.gold is not None for r in records) == n_gold - tp
    assert sum(r.pred is not None for r in records) == n_pred - tp


# -- which sentences are shown ------------------------------------------------------------------

def test_pick_most_errors_first_seeded_ties():
    counts = [1, 3, 0, 2, 3]       # sentences 1 and 4 tie at 3 errors; sentence 2 has none
    assert set(pick(counts, 2, seed=0)) == {1, 4}
    for seed in range(5):
        got = pick(counts, 10, seed=seed)
        assert set(got[:2]) == {1, 4} and got[2:] == [3, 0]   # sentence 2 never, whatever k
    assert pick(counts, 4, seed=7) == pick(counts, 4, seed=7)
    assert {tuple(pick(counts, 2, seed=s)) for s in range(20)} == {(1, 4), (4, 1)}  # the seed orders the tie
    assert pick(counts, 0, seed=0) == []


class _Sent:
    def __init__(self, tokens, line):
        self.tokens, self.source, self.line = tokens, "notes.jsonl", line


def test_model_errors_keeps_the_k_worst_sentences():
    sents = [_Sent(["Mme", "Durand", "à", "Lyon"], 1), _Sent(["RAS"], 2), _Sent(["CHU", "de", "Nantes"], 3)]
    gold = [["O", "B-PER", "O", "B-LOC"], ["O"], ["B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER"], ["B-ORG", "I-ORG", "I-ORG"]]
    m = model_errors("student", sents, gold, pred, k=1, seed=0)
    assert m.confusion == {"LOC→ORG": 1, "PER too long": 1, "spurious PER": 1}
    assert m.sentences_with_errors == 2 and m.sampled
    [shown] = m.shown                         # sentence 0: two errors, sentence 1: one
    assert (shown.index, shown.line, shown.gold, shown.pred) == (0, 1, [("PER", 1, 2), ("LOC", 3, 4)],
                                                                  [("PER", 0, 2), ("ORG", 3, 4)])
    assert [e.label for e in shown.errors] == ["PER too long", "LOC→ORG"]
    off = model_errors("student", sents, gold, pred, k=0, seed=0)
    assert off.shown == [] and not off.sampled and off.confusion == m.confusion


# -- rendering: user text escaped / fenced ------------------------------------------------------

def _section(tokens, gold, pred):
    from nerkd.report.errors import ErrorsSection

    m = model_errors("m<1>", [_Sent(tokens, 7)], [gold], [pred], k=20, seed=0)
    return ErrorsSection(20, 0, [m])


def test_html_escapes_the_text():
    from nerkd.report.errors_page import html_section

    tokens = ["<script>alert(1)</script>", "Jean", '"&', "Paris"]
    html = "".join(html_section(_section(tokens, ["O", "B-PER", "O", "B-LOC"], ["B-PER", "B-PER", "O", "O"]),
                                ["LOC", "PER"]))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&amp;" in html and "m&lt;1&gt;" in html
    assert '<span class="eb">spurious</span>' in html and '<span class="eb">missed</span>' in html
    assert html.count('<mark class="ent" ') == 2   # Jean, right on both lines: no error mark


def test_markdown_fence_outlasts_backticks_in_the_text():
    from nerkd.report.errors_page import markdown_section

    md = "\n".join(markdown_section(_section(["a", "```", "Jean"], ["O", "O", "B-PER"], ["O", "O", "B-LOC"])))
    assert "````text\n" in md and "\n````\n" in md
    assert "gold  a ``` [Jean](PER !PER→LOC)" in md and "  - PER→LOC: Jean\n" in md


# -- in a report --------------------------------------------------------------------------------

def test_report_has_errors_in_context(tiny_bio, tmp_path):
    from nerkd.project import Project
    from nerkd.report.render import write_report
    from nerkd.settings import Settings
    from nerkd.stages.report import build_report, named_models

    settings = Settings(data={"limit": 30}, report={"errors_in_context": 3, "seed": 1})
    rep = build_report(settings, Project.discover(tmp_path), data=str(TEST), models=named_models([str(tiny_bio)]),
                       bench_files=[], output=tmp_path / "r")
    files = write_report(rep)
    data = orjson.loads(files["json"].read_bytes())
    name = rep.rows[0].name
    shown = data["errors_in_context"]["models"][name]
    conf = data["confusion"][name]
    assert data["errors_in_context"]["sentences"] == 3 and len(shown) == 3
    counts = [len(s["errors"]) for s in shown]
    assert counts == sorted(counts, reverse=True)
    # every gold entity that is not right is in one record: recall * support are the right ones
    scores = data["models"][0]["scores"]
    kinds = conf["by_kind"]
    missed_side = kinds["missed"] + kinds["wrong_type"] + kinds["boundary"] + kinds["type_boundary"]
    assert missed_side == scores["support"] - round(scores["recall"] * scores["support"])
    assert sum(conf["by_label"].values()) == sum(kinds.values())
    md, page = files["md"].read_text(encoding="utf-8"), files["html"].read_text(encoding="utf-8")
    assert "## Errors in context" in md and "| error | " in md and "| all errors |" in md
    assert '<h2 id="errors">Errors in context</h2>' in page and page.count('<div class="sent">') == 3
    assert "<script" not in page


def test_errors_in_context_zero_shows_no_sentence(tiny_bio, tmp_path):
    from nerkd.project import Project
    from nerkd.report.render import write_report
    from nerkd.settings import Settings
    from nerkd.stages.report import build_report, named_models

    settings = Settings(data={"limit": 10}, report={"errors_in_context": 0})
    rep = build_report(settings, Project.discover(tmp_path), data=str(TEST), models=named_models([str(tiny_bio)]),
                       bench_files=[], output=tmp_path / "r")
    files = write_report(rep)
    data = orjson.loads(files["json"].read_bytes())
    assert data["errors_in_context"]["models"] == {} and data["confusion"][rep.rows[0].name]["by_label"] is not None
    assert "report.errors_in_context: 0" in files["md"].read_text(encoding="utf-8")
    assert '<div class="sent">' not in files["html"].read_text(encoding="utf-8")
