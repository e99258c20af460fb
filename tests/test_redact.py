"""``nerkd redact`` (issue #24 items 1 and 3): modes, consistency within a note and across notes with a key, the
mapping and --restore, nothing of the original in the output or logs, the recall bias of the engine."""

from __future__ import annotations

import logging
import os
import re
import stat

import orjson
import pytest

from nerkd.redact import Redactor, restore
from nerkd.settings import RedactSettings

NOTE = ("Vu Nadia Durand le 12/03/2021 avec son fils. Mme Durand (tél 06 12 34 56 78) dit que DURAND et Mme D. "
        "vivent à Lyon, suivie par le CCAS de Lyon.")
KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"


def _ents(text: str, *mentions: tuple[str, str]) -> list[dict]:
    """Entity dicts as infer writes them, for each ``(mention, label)`` in order of appearance."""
    out, at = [], 0
    for mention, label in mentions:
        start = text.index(mention, at)
        out.append({"start": start, "end": start + len(mention), "label": label, "text": mention, "score": 0.9})
        at = start + len(mention)
    return out


NOTE_ENTS = _ents(NOTE, ("Nadia Durand", "PER"), ("Mme Durand", "PER"), ("DURAND", "PER"), ("Mme D.", "PER"),
                  ("Lyon", "LOC"), ("CCAS de Lyon", "ORG"))


def _redact(mode: str, text: str = NOTE, ents: list[dict] | None = None, key: bytes | None = None, seed=1, **kw):
    return Redactor(RedactSettings(mode=mode, **kw), key, seed=seed).redact(text, NOTE_ENTS if ents is None else ents)


def _replaced(result) -> list[tuple[str, str]]:
    return [(result.text[r["start"]: r["end"]], r["label"]) for r in result.replacements]


def test_placeholder():
    result = _redact("placeholder", dates="redact")
    assert result.text == ("Vu [PER_1] le [DATE_1] avec son fils. [PER_1] (tél [PHONE_1]) dit que [PER_1] et [PER_1] "
                           "vivent à [LOC_1], suivie par le [ORG_1].")
    assert [r["source"] for r in result.replacements] == ["model", "rule", "model", "rule", "model", "model",
                                                          "model", "model"]
    assert result.to_json() == {"text": result.text, "replacements": result.replacements}


def test_placeholder_numbers_values_per_label():
    text = "Paul Roux voit Marc Petit puis Paul Roux à Nice et Lyon."
    ents = _ents(text, ("Paul Roux", "PER"), ("Marc Petit", "PER"), ("Paul Roux", "PER"), ("Nice", "LOC"),
                 ("Lyon", "LOC"))
    assert _redact("placeholder", text, ents).text == "[PER_1] voit [PER_2] puis [PER_1] à [LOC_1] et [LOC_2]."


def test_mask():
    result = _redact("mask", dates="redact")
    assert result.text == ("Vu [PER] le [DATE] avec son fils. [PER] (tél [PHONE]) dit que [PER] et [PER] vivent à "
                           "[LOC], suivie par le [ORG].")


def test_dates_shift_in_every_mode():
    for mode in ("placeholder", "mask", "surrogate"):
        result = _redact(mode)
        date = next(v for v, label in _replaced(result) if label == "DATE")
        assert re.fullmatch(r"\d\d/\d\d/\d{4}", date) and date != "12/03/2021"
    assert "12/03/2021" in _redact("placeholder", dates="keep").text


def test_surrogate_kinds_and_case_shapes():
    from stdnum.fr import nir

    text = ("Nadia Durand, DURAND Nadia, Mme D., nadia durand, M. Paul MARTIN : 06 12 34 56 78, NIR 2 95 10 99 126 "
            "111 93, nadia.durand@gmail.com, CCAS de Lyon, Hôpital Necker.")
    ents = _ents(text, ("Nadia Durand", "PER"), ("DURAND Nadia", "PER"), ("Mme D.", "PER"), ("nadia durand", "PER"),
                 ("M. Paul MARTIN", "PER"), ("CCAS de Lyon", "ORG"), ("Hôpital Necker", "ORG"))
    result = _redact("surrogate", text, ents)
    got = _replaced(result)
    first, last = got[0][0].split()
    assert (first, last) != ("Nadia", "Durand") and first[0].isupper() and last[0].isupper()
    assert got[1][0] == f"{last.upper()} {first}"                     # surname in capitals stays in capitals
    assert got[2][0] == f"Mme {last[0]}."                             # the initial of the surrogate surname
    assert got[3][0] == f"{first.lower()} {last.lower()}"             # lower case stays lower case
    assert re.fullmatch(r"M\. [A-Z][\w-]+ [A-Z\W]+", got[4][0]) and got[4][0].split()[-1] != "MARTIN"
    phone, nir_value, email = got[5][0], got[6][0], got[7][0]
    assert re.fullmatch(r"06 \d\d \d\d \d\d \d\d", phone) and phone != "06 12 34 56 78"
    assert re.fullmatch(r"2 \d\d \d\d \d\d \d{3} \d{3} \d\d", nir_value) and nir.is_valid(nir_value)
    assert email.endswith(("@example.com", "@example.org", "@example.net")) and "nadia" not in email
    assert got[8][0].startswith(("CCAS de ", "CCAS d'")) and got[8][0] != "CCAS de Lyon"
    assert got[9][0].startswith("Hôpital ") and got[9][0] != "Hôpital Necker"
    assert [label for _, label in got] == ["PER"] * 5 + ["PHONE", "NIR", "EMAIL", "ORG", "ORG"]


def test_surrogate_identifiers_keep_valid_keys():
    from stdnum import iban
    from stdnum.fr import siret

    text = "IBAN FR76 3000 6000 0112 3456 7890 189, SIRET 732 829 320 00074."
    got = _replaced(_redact("surrogate", text, []))
    assert [label for _, label in got] == ["IBAN", "SIRET"]
    assert iban.is_valid(got[0][0]) and got[0][0].startswith("FR") and got[0][0] != "FR76 3000 6000 0112 3456 7890 189"
    assert siret.is_valid(got[1][0]) and re.fullmatch(r"\d{3} \d{3} \d{3} \d{5}", got[1][0])


def test_partial_mentions_are_one_person():
    result = _redact("surrogate")
    names = [v for v, label in _replaced(result) if label == "PER"]
    full = names[0].split()
    assert names[1] == f"Mme {full[1]}" and names[2] == full[1].upper() and names[3] == f"Mme {full[1][0]}."
    text = "Mme Durand appelle. Nadia Durand et Paul Durand passent. Durand rappelle."  # short mention first
    ents = _ents(text, ("Mme Durand", "PER"), ("Nadia Durand", "PER"), ("Paul Durand", "PER"), ("Durand", "PER"))
    result = _redact("placeholder", text, ents)
    assert result.text == "[PER_1] appelle. [PER_1] et [PER_2] passent. [PER_2] rappelle."   # the nearest Durand


def test_keyed_consistency_across_notes():
    a = "Nadia Durand habite Lyon."
    b = "Dossier de Nadia Durand, née à Lyon, voisine de Paul Roux."
    ents_a = _ents(a, ("Nadia Durand", "PER"), ("Lyon", "LOC"))
    ents_b = _ents(b, ("Nadia Durand", "PER"), ("Lyon", "LOC"), ("Paul Roux", "PER"))
    for mode in ("surrogate", "placeholder"):
        run1 = Redactor(RedactSettings(mode=mode), KEY)                # two runs: no seed, one key
        run2 = Redactor(RedactSettings(mode=mode), KEY)
        ra, rb = run1.redact(a, ents_a), run2.redact(b, ents_b)
        assert _replaced(ra) == _replaced(rb)[:2]
        other = Redactor(RedactSettings(mode=mode), OTHER_KEY).redact(b, ents_b)
        assert _replaced(other)[:2] != _replaced(rb)[:2]
    assert re.fullmatch(r"\[PER_[0-9a-f]{8}\] habite \[LOC_[0-9a-f]{8}\]\.", ra.text)


def test_without_key_surrogates_are_drawn_per_run():
    """No key: nothing about the value decides its surrogate (two runs give other names)."""
    text = "Nadia Durand, Paul Roux, Marc Petit, Anne Morel."
    ents = _ents(text, ("Nadia Durand", "PER"), ("Paul Roux", "PER"), ("Marc Petit", "PER"), ("Anne Morel", "PER"))
    runs = {Redactor(RedactSettings(mode="surrogate")).redact(text, ents).text for _ in range(3)}
    assert len(runs) > 1


def test_thresholds_and_keep_labels():
    text = "Paul Roux au FC Nantes."
    ents = [{"start": 0, "end": 9, "label": "PER", "text": "Paul Roux", "score": 0.4},
            {"start": 13, "end": 22, "label": "MISC", "text": "FC Nantes", "score": 0.9}]
    assert _redact("placeholder", text, ents).text == "[PER_1] au [MISC_1]."
    assert _redact("placeholder", text, ents, thresholds={"PER": 0.5}, keep_labels=["MISC"]).text == text


@pytest.mark.parametrize("mode", ["placeholder", "mask", "surrogate"])
@pytest.mark.parametrize("key", [None, KEY])
def test_restore_is_byte_identical(mode, key):
    result = _redact(mode, key=key)
    assert restore(result.text, result.mapping) == NOTE
    assert restore(result.text, {"mapping": result.mapping}) == NOTE
    assert [m["original"] for m in result.mapping][:2] == ["Nadia Durand", "12/03/2021"]
    for r, m in zip(result.replacements, result.mapping, strict=True):
        assert result.text[r["start"]: r["end"]] == m["replacement"]


def test_restore_refuses_another_text():
    from nerkd.redact import RestoreError

    result = _redact("placeholder")
    with pytest.raises(RestoreError) as err:
        restore("X" + result.text, result.mapping)
    assert "Durand" not in str(err.value)


# -- recall bias ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny_bio", "tiny_crf", "tiny_io_teacher"])
def test_bias_raises_recall_monotonically(request, model, one_thread):
    """More bias against O never tags fewer characters (softmax, constrained and CRF decoding); 0 changes nothing."""
    from nerkd.infer import Engine
    from tests.helpers import sample_texts

    engine = Engine.load(request.getfixturevalue(model), device="cpu")
    texts = sample_texts()[:24]
    base = engine.predict(texts)
    covered = []
    for bias in (-2.0, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
        engine.entity_bias = bias
        found = engine.predict(texts)
        if bias == 0.0:
            assert found == base
        covered.append(sum(e["end"] - e["start"] for ents in found for e in ents))
    assert covered == sorted(covered) and covered[-1] > covered[1], covered


# -- the command --------------------------------------------------------------------------------------------
SECRETS = ("Nadia", "Durand", "06 12 34 56 78", "2 95 10 99 126 111 93", "nadia.durand@gmail.com")
LINES = ["Vu Nadia Durand le 12/03/2021, tél 06 12 34 56 78, NIR 2 95 10 99 126 111 93.",
         "",
         "Mme Durand écrit à nadia.durand@gmail.com depuis Lyon."]


def _invoke(runner, args, **kw):
    from nerkd.cli.app import app

    return runner.invoke(app, ["redact", *args], **kw)


@pytest.fixture
def nerkd_logs(caplog):
    """Every log record of the engines (logger "nerkd"), whatever the handlers the CLI installed."""
    logger = logging.getLogger("nerkd")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="nerkd")
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_cli_mapping_and_restore_round_trip(runner, in_tmp, tiny_bio, nerkd_logs, fmt):
    if fmt == "text":
        raw = ("\n".join(LINES) + "\n").encode()
    else:
        raw = b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(LINES))
    src = in_tmp / f"notes.{fmt}"
    src.write_bytes(raw)
    res = _invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out/red.jsonl", "--mapping",
                           "keep/map.jsonl", "--bias", "20", "--mode", "surrogate"])
    assert res.exit_code == 0, res.stderr
    mapping = in_tmp / "keep/map.jsonl"
    assert stat.S_IMODE(os.stat(mapping).st_mode) == 0o600
    out = (in_tmp / "out/red.jsonl").read_bytes()
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert len(rows) == 3 and rows[1] == ({"text": "", "replacements": []} if fmt == "text" else
                                          {"id": 1, "text": "", "replacements": []})
    seen = out.decode() + res.stdout + res.stderr + "\n".join(r.getMessage() for r in nerkd_logs.records)
    for secret in (*SECRETS, *LINES[::2]):
        assert secret not in seen, "an original value reached the output or the logs"
    assert "mapping in keep/map.jsonl" in res.stderr and "PHONE 1 (rule)" in res.stderr
    res = _invoke(runner, ["--restore", "-i", "out/red.jsonl", "--mapping", "keep/map.jsonl", "-o", "back"])
    assert res.exit_code == 0, res.stderr
    assert (in_tmp / "back").read_bytes() == raw
    res = _invoke(runner, ["--restore", "--mapping", "keep/map.jsonl"], input=out)
    assert res.exit_code == 0 and res.stdout.encode() == raw


def test_cli_bias_option_reaches_the_engine(runner, in_tmp, tiny_bio):
    counts = {}
    for bias in ("-20", "20"):
        res = _invoke(runner, ["--model", str(tiny_bio), "--bias", bias, "--set", "redact.rules=false"],
                      input="\n".join(LINES).encode())
        assert res.exit_code == 0, res.stderr
        counts[bias] = sum(len(orjson.loads(x)["replacements"]) for x in res.stdout.splitlines())
    assert counts["-20"] == 0 < counts["20"]


def test_cli_mapping_refuses_files_it_did_not_write(runner, in_tmp, tiny_bio):
    src = in_tmp / "notes.txt"
    src.write_text(LINES[0] + "\n", encoding="utf-8")
    other = in_tmp / "precious.jsonl"
    other.write_text('{"a": 1}\n', encoding="utf-8")
    for mapping, message in ((src, "is also an input"), (other, "was not written by nerkd redact")):
        res = _invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out.jsonl", "--mapping", str(mapping)])
        assert res.exit_code == 1 and message in res.stderr, res.stderr
    assert other.read_text(encoding="utf-8") == '{"a": 1}\n' and not (in_tmp / "out.jsonl").exists()
    res = _invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out.jsonl", "--mapping", "m.jsonl"])
    assert res.exit_code == 0, res.stderr
    res = _invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out.jsonl", "--mapping", "m.jsonl"])
    assert res.exit_code == 0, res.stderr           # its own mapping file: replaced
    res = _invoke(runner, ["--restore", "-i", "out.jsonl", "--mapping", str(other)])
    assert res.exit_code == 1 and "not a mapping file" in res.stderr


def test_cli_bad_input_line(runner, in_tmp, tiny_bio, nerkd_logs):
    secret = "Nadia Durand 06 12 34 56 78"
    raw = (orjson.dumps({"id": 1, "text": "Paul Roux"}) + b"\n" + b'{"id": 2, "text": "' + secret.encode() +
           b'"\n' + orjson.dumps({"id": 3, "text": "x"}) + b"\n")
    src = in_tmp / "bad.jsonl"
    src.write_bytes(raw)
    res = _invoke(runner, ["--model", str(tiny_bio), "-i", str(src), "-o", "out.jsonl", "--mapping", "m.jsonl"])
    assert res.exit_code == 1
    errors = [x for x in res.stderr.splitlines() if "error" in x]
    assert len(errors) == 1 and f"{src}:2:" in errors[0] and "Traceback" not in res.stderr
    seen = res.stdout + res.stderr + "\n".join(r.getMessage() for r in nerkd_logs.records)
    assert "Nadia" not in seen and "06 12" not in seen
    assert [orjson.loads(x)["id"] for x in (in_tmp / "out.jsonl").read_bytes().splitlines()] == [1]
    res = _invoke(runner, ["--restore", "-i", "out.jsonl", "--mapping", "m.jsonl"])   # the mapping of line 1 kept
    assert res.exit_code == 0 and orjson.loads(res.stdout) == {"id": 1, "text": "Paul Roux"}


def test_cli_key_file(runner, in_tmp, tiny_bio):
    (in_tmp / "short.key").write_bytes(b"too short")
    res = _invoke(runner, ["--model", str(tiny_bio), "--key-file", "short.key"], input=b"x\n")
    assert res.exit_code == 1 and "at least 16" in res.stderr
    key = in_tmp / "secret.key"
    key.write_bytes(KEY)
    key.chmod(0o644)
    outs = []
    for _ in range(2):
        res = _invoke(runner, ["--model", str(tiny_bio), "--key-file", str(key), "--bias", "20", "--mode",
                               "surrogate"], input=(LINES[0] + "\n").encode())
        assert res.exit_code == 0, res.stderr
        outs.append(res.stdout)
    assert outs[0] == outs[1] and "readable by others" in res.stderr


def test_failed_write_leaves_no_mapping_line_without_its_output(in_tmp, tiny_bio):
    """A full disk half-way: the mapping maps exactly the lines the output holds, so --restore still works."""
    import errno
    import io

    from nerkd.errors import NerkdError
    from nerkd.settings import InferSettings
    from nerkd.stages.redact import RedactJob, run_redact, run_restore

    class Full(io.BytesIO):
        def write(self, data):
            if self.tell() > 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    out = Full()
    job = RedactJob(io.BytesIO("\n".join(LINES).encode() + b"\n"), out, mapping=in_tmp / "m.jsonl", chunk_size=1,
                    show_progress=False)
    with pytest.raises(NerkdError, match="no space left"):
        run_redact(tiny_bio, job, RedactSettings(), InferSettings(device="cpu"), max_length=64, stride=8)
    written = out.getvalue()
    assert len(written.splitlines()) == 1 and len((in_tmp / "m.jsonl").read_bytes().splitlines()) == 2  # + header
    back = io.BytesIO()
    run_restore(io.BytesIO(written), back, in_tmp / "m.jsonl")
    assert back.getvalue() == (LINES[0] + "\n").encode()
