"""The hand-written evaluation files: spans, identifier check keys, and disjointness from every other data file."""

from __future__ import annotations

import re

import orjson
import pytest

from tests.helpers import DATA

EVAL = ["medsoc_handwritten.jsonl", "medsoc_identifiers.jsonl"]
WORD = re.compile(r"\w+")


def _span_docs(name):
    return [orjson.loads(line) for line in (DATA / name).read_bytes().splitlines() if line.strip()]


def _all_texts(skip: str) -> dict[str, list[str]]:
    """Every text of data/ but ``skip``: token files joined by spaces, span files, raw text files."""
    texts: dict[str, list[str]] = {}
    for path in sorted(DATA.iterdir()):
        if path.name == skip:
            continue
        if path.suffix == ".jsonl":
            docs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
            texts[path.name] = [d["text"] if "text" in d else " ".join(d["tokens"]) for d in docs]
        elif path.suffix in (".txt", ".conll"):
            texts[path.name] = path.read_text(encoding="utf-8").splitlines()
    return texts


def _tokens(text: str) -> frozenset[str]:
    return frozenset(w.casefold() for w in WORD.findall(text))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


@pytest.mark.parametrize("name", EVAL)
def test_spans_are_in_range_and_trimmed(name):
    for i, doc in enumerate(_span_docs(name), 1):
        for ent in doc["entities"]:
            piece = doc["text"][ent["start"]:ent["end"]]
            assert 0 <= ent["start"] < ent["end"] <= len(doc["text"]), f"{name}:{i}"
            assert piece == piece.strip() and piece, f"{name}:{i}: span not trimmed"


@pytest.mark.parametrize("name", EVAL)
def test_no_exact_or_near_duplicate_in_another_data_file(name):
    """Evaluation notes stay apart: no other file of data/ holds the same note or one with >= 0.8 token Jaccard."""
    mine = [_tokens(d["text"]) for d in _span_docs(name)]
    clashes = []
    for other, texts in _all_texts(name).items():
        for j, text in enumerate(texts, 1):
            toks = _tokens(text)
            if len(toks) < 3:
                continue
            clashes += [(i, other, j) for i, m in enumerate(mine, 1) if _jaccard(m, toks) >= 0.8]
    assert not clashes, f"near-duplicates (line, file, line): {clashes[:5]}"


def test_identifier_labels_have_valid_check_keys():
    """Every NIR, IBAN, SIRET and SIREN annotated in medsoc_identifiers.jsonl passes its check key (stdnum)."""
    pytest.importorskip("stdnum")
    from stdnum import iban
    from stdnum.fr import nir, siren, siret

    check = {"NIR": nir.is_valid, "IBAN": iban.is_valid, "SIRET": siret.is_valid, "SIREN": siren.is_valid}
    seen = dict.fromkeys(check, 0)
    for i, doc in enumerate(_span_docs("medsoc_identifiers.jsonl"), 1):
        for ent in doc["entities"]:
            if ent["label"] in check:
                value = doc["text"][ent["start"]:ent["end"]].replace(" ", "")
                assert check[ent["label"]](value), f"line {i}: {ent['label']} with an invalid key"
                seen[ent["label"]] += 1
    assert all(seen.values()), seen
