"""Leak metrics (``nerkd.report.leaks``) on a hand-made case whose figures are worked out below."""

from __future__ import annotations

import pytest

from nerkd.report.leaks import leak_score
from tests.helpers import DATA

DOC1 = "Mme Nadia Durand habite Lyon."
DOC2 = "Tel 06 12 34 56 78, RAS."
DOC3 = "Rien à signaler."

CASE = [
    # PER "Nadia Durand" (4-16): the replacement 0-9 covers "Mme" (outside: over-redacted) and "Nadia", not
    # "Durand"; LOC "Lyon" (24-28) is replaced, as an ORG (still covered: any label counts)
    (DOC1, [(4, 16, "PER"), (24, 28, "LOC")], [(0, 9, "PER"), (24, 28, "ORG")]),
    # PHONE "06 12 34 56 78" (4-18) replaced whole
    (DOC2, [(4, 18, "PHONE")], [(4, 18, "PHONE")]),
    # no entity; "Rien" replaced as a PER: over-redaction only
    (DOC3, [], [(0, 4, "PER")]),
]


def test_hand_made_case():
    assert DOC1[4:16] == "Nadia Durand" and DOC1[24:28] == "Lyon" and DOC2[4:18] == "06 12 34 56 78"
    score = leak_score(CASE)
    # gold non-space characters: PER "Nadia"+"Durand" = 5 + 6 = 11 (the space inside is not counted), LOC 4,
    # PHONE 10 digits; covered: PER 5 ("Nadia"), LOC 4, PHONE 10
    per, loc, phone = score.labels["PER"], score.labels["LOC"], score.labels["PHONE"]
    assert (per.chars, per.covered, loc.chars, loc.covered, phone.chars, phone.covered) == (11, 5, 4, 4, 10, 10)
    assert (score.chars, score.covered) == (25, 19)
    assert score.recall == pytest.approx(19 / 25)
    assert per.recall == pytest.approx(5 / 11) and loc.recall == 1.0 and phone.recall == 1.0
    # non-space characters outside the gold spans: doc 1 "Mme" + "habite" + "." = 10, doc 2 "Tel" + "," + "RAS."
    # = 8, doc 3 "Rien" + "à" + "signaler." = 14 -> 32; replaced among them: "Mme" (3) and "Rien" (4), both by
    # PER replacements
    assert (score.outside_chars, score.over_chars) == (32, 7)
    assert score.over_redaction == pytest.approx(7 / 32)
    assert per.over_chars == 7 and loc.over_chars == phone.over_chars == 0
    # documents: 3 scored, 2 with an entity, of which doc 2 only is fully redacted; per label: PER's only
    # document is not, LOC's and PHONE's are
    assert (score.documents, score.docs, score.docs_full) == (3, 2, 1)
    assert score.full_share == 0.5
    assert (per.docs, per.docs_full, loc.docs, loc.docs_full, phone.docs, phone.docs_full) == (1, 0, 1, 1, 1, 1)
    assert "ORG" not in score.labels   # the ORG replacement covered a gold LOC: neither gold nor over-redaction
    d = score.as_dict()
    assert d["recall"] == pytest.approx(0.76) and d["docs_fully_redacted_share"] == 0.5
    assert d["per_label"]["PER"]["over_redaction"] == pytest.approx(7 / 32)
    assert sum(v["over_redacted_chars"] for v in d["per_label"].values()) == d["over_redacted_chars"]


def test_spaces_between_replacements_are_no_leak():
    text = "Nadia Durand"
    full = leak_score([(text, [(0, 12, "PER")], [(0, 5, "PER"), (6, 12, "PER")])])
    assert (full.chars, full.covered, full.docs_full) == (11, 11, 1)
    part = leak_score([(text, [(0, 12, "PER")], [(0, 5, "PER")])])
    assert part.recall == pytest.approx(5 / 11) and part.docs_full == 0


def test_nothing_to_divide_by_is_none():
    score = leak_score([("   ", [], [])])
    assert score.recall is None and score.full_share is None and score.over_redaction is None
    assert score.documents == 1 and score.docs == 0


def test_bad_spans_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        leak_score([("abc", [(0, 9, "PER")], [])])
    with pytest.raises(ValueError, match="overlap"):
        leak_score([("abcdef", [], [(0, 4, "PER"), (3, 5, "LOC")])])


# -- nerkd report: the redaction section on a tiny model ---------------------------------------------------------
NOTES = [
    ("Appeler Mme Durand au 06 12 34 56 78 ou écrire à nadia.durand@example.org avant le 12/03/2024.",
     [("Durand", "PER"), ("06 12 34 56 78", "PHONE"), ("nadia.durand@example.org", "EMAIL"),
      ("12/03/2024", "DATE")]),
    ("Sortie du CHU de Lyon prévue ; RAS.", [("CHU de Lyon", "ORG")]),
    ("Rien à signaler ce jour.", []),
]


def gold_file(folder) -> tuple[object, list[tuple[str, list]]]:
    import orjson

    docs, lines = [], []
    for text, ents in NOTES:
        spans = [(text.index(s), text.index(s) + len(s), label) for s, label in ents]
        docs.append((text, spans))
        lines.append(orjson.dumps({"text": text, "entities": [{"start": a, "end": b, "label": c}
                                                              for a, b, c in spans]}))
    path = folder / "notes.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, docs


def test_report_measures_redaction_when_the_data_has_rule_labels(in_tmp, runner, tiny_bio):
    import orjson

    from nerkd.cli.app import app
    from nerkd.infer import Engine
    from nerkd.redact import Redactor
    from nerkd.redact.spans import merge_spans, model_spans
    from nerkd.settings import Settings

    data, docs = gold_file(in_tmp)
    result = runner.invoke(app, ["report", "--data", str(data), "-m", f"tiny={tiny_bio}", "--output", "r"])
    assert result.exit_code == 0, result.output
    assert "Bias sweep" in result.stdout                    # the terminal shows the tables too
    out = in_tmp / "r"
    red = orjson.loads((out / "report.json").read_bytes())["redaction"]
    assert red is not None and red["documents"] == 3 and red["unit"] == "non-space characters"
    assert red["bias"] == 2.0 and red["sweep"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert red["gold_labels"] == ["DATE", "EMAIL", "ORG", "PER", "PHONE"]   # the gold file's types, sorted
    assert red["rule_labels"] == ["DATE", "EMAIL", "PHONE"]
    (tiny,) = red["models"]
    assert tiny["name"] == "tiny" and [p["bias"] for p in tiny["sweep"]] == red["sweep"]
    for point in tiny["sweep"]:   # the rules find every identifier of these notes, whatever the bias
        for label in ("PHONE", "EMAIL", "DATE"):
            assert point["model_rules"]["per_label"][label]["recall"] == 1.0
    # the model's share, recomputed here from the engine at bias 0 and 4
    engine = Engine.load(tiny_bio, device="cpu", precision="fp32", max_length=128, stride=32)
    redactor = Redactor(Settings().redact)
    for point in (tiny["sweep"][0], tiny["sweep"][-1]):
        engine.entity_bias = point["bias"]
        found = engine.predict([t for t, _ in docs])
        expected = leak_score([(t, g, [(s.start, s.end, s.label) for s in merge_spans(model_spans(e), [], t)])
                               for (t, g), e in zip(docs, found, strict=True)])
        assert point["model"]["covered_chars"] == expected.covered
        assert point["model"]["over_redacted_chars"] == expected.over_chars
        assert point["model"]["entity_chars"] == expected.chars == 6 + 10 + 24 + 10 + 9   # non-space characters
        both = leak_score([(t, g, [(s.start, s.end, s.label) for s in redactor.spans(t, e)])
                           for (t, g), e in zip(docs, found, strict=True)])   # what nerkd redact replaces
        assert point["model_rules"]["covered_chars"] == both.covered
        assert point["model_rules"]["over_redacted_chars"] == both.over_chars
    first, last = tiny["sweep"][0]["model"], tiny["sweep"][-1]["model"]
    assert last["recall"] >= first["recall"] and last["over_redaction"] >= first["over_redaction"]
    assert tiny["model_rules"] == tiny["sweep"][2]["model_rules"]                    # redact.bias 2
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Redaction (leak metrics)" in md and "### Bias sweep (%)" in md and "| tiny | 2 (redact.bias) |" in md
    assert "| tiny | PHONE | 10 |" in md and "Counted in non-space characters." in md
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="redaction"' in page and "Redaction per label (%), bias 2" in page


def test_report_redact_flag_on_data_without_rule_labels(in_tmp, runner, tiny_bio):
    import orjson

    from nerkd.cli.app import app

    test = str(DATA / "test.jsonl")
    base = ["report", "--data", test, "-m", str(tiny_bio), "--set", "data.limit=4"]
    assert runner.invoke(app, [*base, "--output", "a"]).exit_code == 0
    assert orjson.loads((in_tmp / "a" / "report.json").read_bytes())["redaction"] is None
    assert "Redaction" not in (in_tmp / "a" / "report.md").read_text(encoding="utf-8")
    result = runner.invoke(app, [*base, "--output", "b", "--redact", "--set", "redact.rules=false"])
    assert result.exit_code == 0, result.output
    red = orjson.loads((in_tmp / "b" / "report.json").read_bytes())["redaction"]
    assert red["documents"] == 4 and red["rules"] is False and red["rule_labels"] == []
    (model,) = red["models"]
    assert model["model"] == model["model_rules"]          # no rule: the two are one
    assert set(model["model"]["per_label"]) >= {"PER"} and model["model"]["entity_chars"] > 0
