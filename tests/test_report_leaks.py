"""Leak metrics (``nerkd.report.leaks``) on a hand-made case whose figures are worked out below."""

from __future__ import annotations

import pytest

from nerkd.report.leaks import leak_score

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
