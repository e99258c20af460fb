"""nerkd select (issue #20, item 3): which unlabelled notes to annotate next.

Hand-made cases drive the library with constructed word probabilities (a fake engine), so every expected order
is worked out here; the tiny models drive the real engine and the CLI end to end."""

from __future__ import annotations

import math
import re

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.data.annotators import iter_records
from nerkd.data.docs import Doc
from nerkd.data.words import split_words
from nerkd.infer.select import (
    Chooser,
    SelectConfig,
    disagreement,
    jaccard,
    note_uncertainty,
    select_notes,
    tiebreak,
    word_labels,
    word_set,
    word_uncertainty,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SURE = [1.0, 0.0, 0.0, 0.0]          # a word the model is sure of (4 labels: O, PER, LOC, ORG)
HALF = [0.5, 0.5, 0.0, 0.0]          # torn between two labels
FLAT = [0.25, 0.25, 0.25, 0.25]      # no idea


class FakeEngine:
    """Engine stand-in: each text's word probabilities and entities are given, keyed by the text."""

    def __init__(self, table: dict[str, tuple[list[list[float]], list[dict]]]):
        self.table = table
        self.calls = 0

    def predict_probs(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            rows, ents = self.table[t]
            assert len(rows) == len(split_words(t)), t
            out.append((ents, torch.tensor(rows, dtype=torch.float32)))
        return out

    def predict(self, texts):
        return [ents for ents, _ in self.predict_probs(texts)]


def docs(texts) -> list[Doc]:
    return [Doc(i, t) for i, t in enumerate(texts, start=1)]


def chosen_texts(selection) -> list[str]:
    return [c.doc.text for c in selection.chosen]


# -- the scores ----------------------------------------------------------------------------------
def test_word_uncertainty_by_hand():
    probs = torch.tensor([SURE, HALF, FLAT])
    ent = word_uncertainty(probs, "entropy")
    # entropy over log 4: 0, log 2 / log 4 = 0.5, 1
    assert ent.tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)
    margin = word_uncertainty(probs, "margin")
    # 1 - (p1 - p2): 1 - 1 = 0, 1 - 0 = 1, 1 - 0 = 1
    assert margin.tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)
    assert word_uncertainty(torch.tensor([[0.7, 0.2, 0.1, 0.0]]), "margin").tolist() == pytest.approx([0.5])


def test_note_uncertainty_is_the_mean_of_the_top_words_padded():
    u = torch.tensor([0.1, 0.9, 0.0, 0.5, 0.3])
    assert note_uncertainty(u, 2) == pytest.approx((0.9 + 0.5) / 2)
    assert note_uncertainty(u, 5) == pytest.approx(1.8 / 5)
    # a one-word note with one doubtful word does not beat a note holding several (missing words count 0)
    assert note_uncertainty(torch.tensor([1.0]), 5) == pytest.approx(0.2)
    assert note_uncertainty(torch.tensor([]), 5) == 0.0


def test_uncertainty_orders_the_notes():
    """Four notes whose expected order is worked out by hand (entropy, top_words 2):
    a: two FLAT words -> (1 + 1) / 2 = 1.0; b: one FLAT, one HALF -> 0.75; c: one HALF -> 0.25;
    d: all SURE -> 0; e: one FLAT word only -> (1 + 0) / 2 = 0.5."""
    texts = {"a": "Vu Mme Dupont hier soir", "b": "Appel du CCAS ce matin", "c": "RAS pour aujourd'hui",
             "d": "Rien à signaler", "e": "Bouchard"}
    table = {
        texts["a"]: ([SURE, FLAT, FLAT, SURE, SURE], []),
        texts["b"]: ([SURE, SURE, FLAT, SURE, HALF], []),
        texts["c"]: ([SURE, SURE, HALF], []),
        texts["d"]: ([SURE, SURE, SURE], []),
        texts["e"]: ([FLAT], []),
    }
    engine = FakeEngine(table)
    cfg = SelectConfig(n=4, strategy="entropy", top_words=2, dedup=None)
    sel = select_notes(docs(texts.values()), engine, cfg)
    assert chosen_texts(sel) == [texts[k] for k in "abec"]
    assert [c.score for c in sel.chosen] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    s = sel.stats
    assert (s.read, s.empty, s.scored, s.duplicates, s.chosen) == (5, 0, 5, 0, 4)
    assert (s.low, s.high, s.chosen_low, s.chosen_high) == pytest.approx((0.0, 1.0, 0.25, 1.0))
    # margin: HALF and FLAT both 1 -> b ties with a at 1.0, and the seeded order decides between them
    sel = select_notes(docs(texts.values()), engine, SelectConfig(n=2, strategy="margin", top_words=2, dedup=None))
    assert sorted(chosen_texts(sel)) == sorted([texts["a"], texts["b"]])


def test_student_disagreement_changes_the_ranking():
    """a is more uncertain than b (entropy, top word: 0.5 against 0.36); the student agrees with the model on a
    and disagrees on two of b's four words ("du": O / B-ORG, "CCAS": B-ORG / B-LOC). Without a student a ranks
    first; with it (weight 0.5) b does: a = 0.5 x 0.5 + 0.5 x 0 = 0.25, b = 0.5 x 0.36 + 0.5 x 0.5 = 0.43."""
    a, b = "Vu Mme Dupont hier", "Appel du CCAS Lyon"
    ents_a = [{"start": 3, "end": 13, "label": "PER"}]
    p = [0.8, 0.2, 0.0, 0.0]
    unc_b = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(4)
    teacher = FakeEngine({a: ([SURE, HALF, SURE, SURE], ents_a),
                          b: ([SURE, SURE, SURE, p], [{"start": 9, "end": 13, "label": "ORG"}])})
    student = FakeEngine({a: ([SURE] * 4, ents_a),
                          b: ([SURE] * 4, [{"start": 6, "end": 8, "label": "ORG"},
                                           {"start": 9, "end": 13, "label": "LOC"}])})
    cfg = SelectConfig(n=2, strategy="entropy", top_words=1, dedup=None)
    assert chosen_texts(select_notes(docs([a, b]), teacher, cfg)) == [a, b]
    sel = select_notes(docs([a, b]), teacher, cfg, student=student)
    assert chosen_texts(sel) == [b, a]
    by_text = {c.doc.text: c for c in sel.chosen}
    assert by_text[a].disagreement == 0.0
    assert by_text[b].disagreement == pytest.approx(0.5)
    assert by_text[b].score == pytest.approx(round(0.5 * unc_b + 0.5 * 0.5, 6))
    assert by_text[a].score == pytest.approx(0.25)


def test_word_labels_and_disagreement():
    text = "Appel du CCAS de Lyon"
    ws = split_words(text)
    assert word_labels(ws, [{"start": 9, "end": 21, "label": "ORG"}]) == ["O", "O", "B-ORG", "I-ORG", "I-ORG"]
    two = [{"start": 9, "end": 13, "label": "ORG"}, {"start": 17, "end": 21, "label": "LOC"}]
    assert word_labels(ws, two) == ["O", "O", "B-ORG", "O", "B-LOC"]
    assert disagreement(word_labels(ws, two), ["O", "O", "B-ORG", "I-ORG", "I-ORG"]) == pytest.approx(2 / 5)
    # the same words, split into two entities of the same type: the boundary counts
    split = [{"start": 6, "end": 8, "label": "ORG"}, {"start": 9, "end": 13, "label": "ORG"}]
    assert word_labels(ws, split) == ["O", "B-ORG", "B-ORG", "O", "O"]


# -- near-duplicates -----------------------------------------------------------------------------
NOTE = "Visite à domicile de Mme Martin avec son fils pour le dossier APA"
NEAR = "Visite à domicile de Mme Martin avec sa fille pour le dossier APA"      # 2 of 13 words differ
OTHER = "Appel du CCAS de Vénissieux au sujet du loyer impayé de M. Diallo"


def test_jaccard_threshold():
    a, b = word_set(split_words(NOTE)), word_set(split_words(NEAR))
    assert jaccard(a, b) == pytest.approx(11 / 15)   # 13 words each, 11 shared
    assert jaccard(a, a) == 1.0
    near2 = word_set(split_words(NOTE.replace("fils", "frère")))
    assert jaccard(a, near2) == pytest.approx(12 / 14) and jaccard(a, near2) >= 0.8


@pytest.mark.parametrize("worse_first", [False, True])
def test_near_duplicates_are_dropped(worse_first):
    """NOTE and its copy differing in one word (Jaccard 12/14 = 0.857): only the better-ranked one is kept,
    whichever comes first (the better one arriving second replaces the other); OTHER is kept."""
    dup = NOTE.replace("fils", "frère")
    n_words = len(split_words(NOTE))
    table = {NOTE: ([FLAT] * n_words, []), dup: ([HALF] * n_words, []),
             OTHER: ([SURE] * len(split_words(OTHER)), []), "MME MARTIN": ([HALF, HALF], [])}
    texts = [dup, NOTE, OTHER] if worse_first else [NOTE, dup, OTHER]
    engine = FakeEngine(table)
    sel = select_notes(docs(texts), engine, SelectConfig(n=3, top_words=2))
    assert chosen_texts(sel) == [NOTE, OTHER]
    assert sel.stats.duplicates == 1 and sel.stats.chosen == 2
    kept = select_notes(docs(texts), engine, SelectConfig(n=3, top_words=2, dedup=None))
    assert chosen_texts(kept) == [NOTE, dup, OTHER] and kept.stats.duplicates == 0
    # exact duplicates (case aside) too
    sel = select_notes(docs(["MME MARTIN", "Mme Martin"]), FakeEngine({**table, "Mme Martin": ([HALF, HALF], [])}),
                       SelectConfig(n=2))
    assert len(sel.chosen) == 1 and sel.stats.duplicates == 1


# -- seeded, streamed ----------------------------------------------------------------------------
def test_ties_follow_the_seed_and_repeat():
    texts = [f"note numéro {i} du jour" for i in range(40)]
    engine = FakeEngine({t: ([FLAT] * 5, []) for t in texts})      # all equal

    def order(seed):
        return chosen_texts(select_notes(docs(texts), engine, SelectConfig(n=10, seed=seed, dedup=None,
                                                                           chunk_size=7)))

    assert order(0) == order(0)
    assert order(1) == order(1)
    assert order(0) != order(1)
    # random: the model is never asked; a seeded choice, the same for every chunk size
    sel = select_notes(docs(texts), None, SelectConfig(n=10, strategy="random", seed=3, dedup=None, chunk_size=5))
    assert chosen_texts(sel) == chosen_texts(select_notes(docs(texts), None, SelectConfig(
        n=10, strategy="random", seed=3, dedup=None, chunk_size=40)))
    assert all(c.entities is None for c in sel.chosen)


def test_streamed_with_a_bounded_heap(monkeypatch):
    """The input is consumed chunk by chunk and the heap never holds more than n candidates."""
    texts = [f"texte {i} " + "mot " * (i % 7) for i in range(200)]
    rng = torch.Generator().manual_seed(0)
    table = {}
    for t in texts:
        rows = torch.softmax(torch.randn(len(split_words(t)), 4, generator=rng) * 3, -1).tolist()
        table[t] = (rows, [])
    engine = FakeEngine(table)
    biggest = 0
    offer = Chooser.offer

    def spy(self, cand):
        nonlocal biggest
        offer(self, cand)
        biggest = max(biggest, len(self.heap))

    monkeypatch.setattr(Chooser, "offer", spy)
    read = 0

    def source():
        nonlocal read
        for d in docs(texts):
            read += 1
            yield d

    seen = []
    sel = select_notes(source(), engine, SelectConfig(n=8, chunk_size=16, dedup=None),
                       on_chunk=lambda chunk, s: seen.append(read))
    assert biggest == 8 and engine.calls == 200 // 16 + 1
    assert seen[:3] == [16, 32, 48]              # read lazily, one chunk at a time
    want = sorted(texts, key=lambda t: -round(note_uncertainty(word_uncertainty(
        torch.tensor(table[t][0]), "entropy"), 5), 6))[:8]
    assert sorted(chosen_texts(sel)) == sorted(want)


# -- the real engine and the command -------------------------------------------------------------
NOTES = [
    "Mme Lefèvre quitte l’EHPAD Les Opalines pour Saint-Étienne avec le SSIAD de Lyon.",
    "",
    "Visite 🙂 chez Mme Bernard, puis 👍 appel du CCAS de Lyon pour M. Nguyen.",
    "RDV au CCAS de Vénissieux mardi 14h avec M. Diallo et sa fille Aminata.",
    "RDV au CCAS de Vénissieux mardi 14h avec M. Diallo et sa fille Aminata !",
    "Appel de la MDPH de l'Isère : dossier PCH en cours pour Jean-Pierre Moreau.",
    "Entretien avec l'éducatrice de l'ASE à Marseille au sujet de Kevin.",
]


def test_predict_probs_matches_predict(tiny_bio, tiny_io_teacher):
    from nerkd.infer import Engine

    for ref in (tiny_bio, tiny_io_teacher):
        engine = Engine.load(ref, device="cpu", chunk_size=3)
        got = engine.predict_probs(NOTES)
        assert [e for e, _ in got] == engine.predict(NOTES)
        for text, (_, probs) in zip(NOTES, got, strict=True):
            assert probs.shape == (len(split_words(text)), len(engine.space))
            assert torch.allclose(probs.sum(-1), torch.ones(len(probs)), atol=1e-5)


def run(runner, *args):
    res = runner.invoke(app, ["select", "--no-progress", *map(str, args)])
    return res


@pytest.mark.parametrize("fmt", ["labelstudio", "doccano"])
def test_select_writes_tasks_that_read_back(runner, in_tmp, tiny_bio, fmt):
    from nerkd.infer import Engine
    from nerkd.infer.select import note_uncertainty, word_uncertainty

    src = in_tmp / "notes.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": f"n{i}", "text": t}) + b"\n" for i, t in enumerate(NOTES)))
    out = in_tmp / ("tasks.json" if fmt == "labelstudio" else "tasks.jsonl")
    res = run(runner, "--model", tiny_bio, "--input", src, "-n", 4, "--format", fmt, "--output", out)
    assert res.exit_code == 0, res.stderr
    assert re.search(r"7 notes read, 1 empty skipped, 6 scored, scores 0\.\d{4}\.\.[01]\.\d{4}; "
                     r"1 near-duplicates dropped; 4 chosen \(scores ", res.stderr), res.stderr

    # the chosen notes are the 4 best of the engine's own scores, best first, one of the two near-twins
    engine = Engine.load(tiny_bio, device="cpu")
    live = [t for t in NOTES if t]
    score = {t: round(note_uncertainty(word_uncertainty(p, "entropy"), 5), 6)
             for t, (_, p) in zip(live, engine.predict_probs(live), strict=True)}

    def rank(t):   # as the chooser ranks: score, then the seeded key of the line (seed 0)
        return score[t], tiebreak(0, NOTES.index(t) + 1)

    loser = min(NOTES[3:5], key=rank)      # the near-twins: the lower-ranked one goes
    expected = sorted((t for t in live if t != loser), key=rank, reverse=True)[:4]
    entities = dict(zip(live, engine.predict(live), strict=True))

    if fmt == "labelstudio":
        tasks = orjson.loads(out.read_bytes())
        texts = [t["data"]["text"] for t in tasks]
        assert [t["data"]["doc_id"] for t in tasks] == [f"n{NOTES.index(x)}" for x in texts]
        # Label Studio's export once an annotator accepted every prediction
        export = [{"id": i, "data": t["data"], "annotations": [{"id": 100 + i, "result": t["predictions"][0]["result"],
                                                                "was_cancelled": False}]}
                  for i, t in enumerate(tasks, start=1)]
        (in_tmp / "export.json").write_bytes(orjson.dumps(export))
        records = list(iter_records(in_tmp / "export.json", "labelstudio"))
    else:
        rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
        texts = [r["text"] for r in rows]
        assert [r["doc_id"] for r in rows] == [f"n{NOTES.index(x)}" for x in texts]
        export = [{"id": i, "text": r["text"], "label": r["label"], "Comments": []} for i, r in enumerate(rows)]
        (in_tmp / "export.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in export))
        records = list(iter_records(in_tmp / "export.jsonl", "doccano"))
    assert texts == expected
    assert [r.text for r in records] == texts
    for r in records:   # exact offsets (code points, emojis included), the model's own entities
        assert r.spans == [(e["start"], e["end"], e["label"]) for e in entities[r.text]]
        assert all(r.text[s:e] == x["text"] for (s, e, _), x in zip(r.spans, entities[r.text], strict=True))
    assert any(r.spans for r in records)


def test_select_random_and_student(runner, in_tmp, tiny_bio, tiny_io_teacher):
    src = in_tmp / "notes.txt"
    src.write_text("\n".join(NOTES) + "\n", encoding="utf-8")
    outs = []
    for i, args in enumerate([["--strategy", "random", "--seed", 1], ["--strategy", "random", "--seed", 1],
                              ["--strategy", "random", "--seed", 2], ["--student", tiny_io_teacher]]):
        out = in_tmp / f"t{i}.jsonl"
        res = run(runner, "-m", tiny_bio, "-i", src, "-n", 3, "--format", "doccano", "-o", out, *args)
        assert res.exit_code == 0, res.stderr
        outs.append([orjson.loads(x)["text"] for x in out.read_bytes().splitlines()])
        if i == 0:
            assert re.search(r"6 in the draw; \d near-duplicates dropped; 3 chosen at random", res.stderr)
    assert outs[0] == outs[1] and len(outs[0]) == 3
    assert outs[0] != outs[2]
    assert "disagreement with" in res.stderr


def test_bad_input_line_is_named_without_its_content(runner, in_tmp, tiny_bio):
    src = in_tmp / "notes.jsonl"
    secret = "Mme Secrète habite rue Cachée"
    src.write_bytes(orjson.dumps({"text": NOTES[0]}) + b"\n" + orjson.dumps({"text": NOTES[3]}) + b"\n"
                    + b'{"text": "' + secret.encode() + b'"\n')
    out = in_tmp / "tasks.json"
    res = run(runner, "-m", tiny_bio, "-i", src, "-o", out)
    assert res.exit_code == 1
    assert f"{src}:3: invalid JSON" in res.stderr
    assert "Secrète" not in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()
    bad = in_tmp / "bad.txt"
    bad.write_bytes(b"une note\n\xff\xfe\n")
    res = run(runner, "-m", tiny_bio, "-i", bad, "-o", out)
    assert res.exit_code == 1 and f"{bad}:2: not valid UTF-8" in res.stderr


def test_output_is_never_the_input(runner, in_tmp, tiny_bio):
    src = in_tmp / "notes.txt"
    src.write_text(NOTES[0] + "\n", encoding="utf-8")
    res = run(runner, "-m", tiny_bio, "-i", src, "-o", src)
    assert res.exit_code == 1 and "nerkd would write over it" in res.stderr
    assert src.read_text(encoding="utf-8") == NOTES[0] + "\n"


def test_select_from_a_parquet_table(runner, in_tmp, tiny_bio):
    """Notes in a Parquet table (note_id/note_text): ids go to doc_id; a null text is skipped and counted."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [NOTES[0], None, NOTES[2], NOTES[5], NOTES[6]]
    src = in_tmp / "notes.parquet"
    pq.write_table(pa.table({"note_id": [10, 11, 12, 13, 14], "note_text": texts}), src)
    out = in_tmp / "tasks.json"
    res = run(runner, "-m", tiny_bio, "-i", src, "-n", 10, "-o", out)
    assert res.exit_code == 0, res.stderr
    tasks = orjson.loads(out.read_bytes())
    assert sorted(t["data"]["doc_id"] for t in tasks) == [10, 12, 13, 14]
    assert {t["data"]["text"] for t in tasks} == {t for t in texts if t}
    assert "4 notes read, 0 empty skipped, 4 scored" in res.stderr
    assert "1 rows of" in res.stderr and "skipped: their text cannot be tagged" in res.stderr
    assert "only 4 notes to choose from, 10 asked" in res.stderr
