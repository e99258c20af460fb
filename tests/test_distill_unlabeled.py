"""Distillation on an unlabelled transfer set (#10 item 1): unlabelled batches take only the teacher's terms, the
mixing ratio, the leak filter's count in the log and in validate, the teacher cache, the resume fingerprint, the
CE-only warning. (Exact resume with an unlabelled set: tests/test_train.py.)"""

from __future__ import annotations

import math

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.data.encode import IGNORE, bucket_batches, collate
from nerkd.data.labels import LabelSpace, type_mapping
from nerkd.data.unlabeled import EpochSampler, scan_unlabeled
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.models.student import student_from_teacher
from nerkd.settings import DistillSettings
from nerkd.train.kd import DistillObjective
from nerkd.train.transfer import TeacherCache, TransferSet, fill_cache, interleave
from tests.helpers import DATA, write_kd_config

BIO = LabelSpace.from_file(DATA / "label2id.json")
NOTES = (DATA / "unlabeled.txt").read_text(encoding="utf-8").splitlines()
DEV_SENTENCE = " ".join(orjson.loads((DATA / "dev.jsonl").read_bytes().splitlines()[0])["tokens"])


def short_texts(n: int) -> list[str]:
    """Distinct texts far shorter than a window (one window each)."""
    return [f"Visite n° {i} chez Mme Martin à Lyon ." for i in range(n)]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def notes_file(tmp_path):
    """20 notes, then a dev sentence (line 21: leaks), a blank line and a repeat of the first note."""
    return write_lines(tmp_path / "u.txt", [*NOTES[:20], DEV_SENTENCE, "", NOTES[0]])


def objective(folder, *, crf: bool, weight: float = 0.5, layers=(1, 2), student_layers=(1, 2)):
    teacher = NerModel.load(folder)
    torch.manual_seed(0)
    student = student_from_teacher(teacher, list(student_layers), BIO, crf=crf)
    with torch.no_grad():   # not the teacher's copy: KD and hidden terms are > 0
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    settings = DistillSettings(temperature=2.0, layer_map={"teacher": list(layers), "student": [1, 2]},
                               unlabeled_weight=weight,
                               phases=[{"from_epoch": 1, "weights": {"ce": 1.0, "kd": 0.5, "hidden": 0.3, "crf": 0.2}}])
    obj = DistillObjective(student, teacher, type_mapping(teacher.labels, BIO), settings)
    obj.model.eval()   # no dropout: losses comparable call to call
    return obj


def transfer(path, per_epoch=12, max_length=32, stride=8, cache=False) -> TransferSet:
    return TransferSet(EpochSampler(scan_unlabeled(path), seed=0), per_epoch, max_length, stride, cache)


def unlabelled_batches(folder, path, batch_size=4):
    """The windows of epoch 1 of a transfer set over ``path`` (20 texts per epoch), as (tensors, keys) batches."""
    tok = load_tokenizer(folder)
    u = transfer(path, per_epoch=20).windows(tok, 1)
    out = []
    for b in bucket_batches([len(w) for w in u.windows], batch_size):
        out.append((collate([u.windows[k] for k in b], tok.pad_token_id), [u.keys[k] for k in b]))
    return out


# -- unlabelled batches never take a gold term ----------------------------------------------------------------------

def test_unlabelled_batches_take_no_ce_or_crf_term(tiny_crf, notes_file):
    obj = objective(tiny_crf, crf=True)
    assert obj.use_crf and obj.kd_per_label          # a CRF on both sides: CRF NLL and the CRF-transition term exist
    batch, keys = unlabelled_batches(tiny_crf, notes_file)[0]
    assert (batch["labels"] == IGNORE).all()
    total, logged = obj.unlabeled_loss(batch, 1, keys)
    assert set(logged) == {"kd", "hidden"}             # nothing else is computed, so nothing else is logged
    kd, hid = float(logged["kd"]), float(logged["hidden"])
    assert kd > 0 and hid > 0
    assert total.item() == pytest.approx(0.5 * (0.5 * kd + 0.3 * hid), rel=1e-6)   # unlabeled_weight x teacher terms

    # real tags on every owned word: an unlabelled batch's loss must not see them ...
    tags = torch.randint(1, len(BIO), batch["labels"].shape, generator=torch.Generator().manual_seed(0))
    labelled = {**batch, "labels": torch.where(batch["word_index"] >= 0, tags, IGNORE)}
    again, logged_again = obj.unlabeled_loss(labelled, 1, keys)
    assert again.item() == total.item()
    # ... while the gold loss of the same batch does (CE through the CRF NLL, and the transition term)
    gold_total, gold = obj.loss(labelled, 1)
    assert float(gold["ce"]) > 0 and float(gold["crf"]) > 0 and gold_total.item() > total.item() / 0.5
    # the KD positions of an unlabelled batch are the owned words (word_index >= 0), as gold labels would mark them
    assert float(gold["kd"]) == pytest.approx(kd, rel=1e-6) and float(gold["hidden"]) == pytest.approx(hid, rel=1e-6)

    again.backward()
    assert obj.model.crf.transitions.grad is None      # no CRF term reached the CRF
    assert obj.model.encoder_model.classifier.weight.grad is not None


def test_both_phase_weights_zero_still_backpropagates(tiny_io_teacher, notes_file):
    obj = objective(tiny_io_teacher, crf=False, layers=(2, 4), student_layers=(2, 4))
    obj.settings = DistillSettings(layer_map=obj.settings.layer_map,
                                   phases=[{"from_epoch": 1, "weights": [1, 0, 0, 0]}])
    batch, keys = unlabelled_batches(tiny_io_teacher, notes_file)[0]
    total, _ = obj.unlabeled_loss(batch, 1, keys)
    assert total.item() == 0.0
    total.backward()


# -- the epoch: ratio, order, logs -----------------------------------------------------------------------------------

def test_interleave_spreads_unlabelled_batches_evenly():
    assert interleave(3, 0) == [("gold", 0), ("gold", 1), ("gold", 2)]
    assert interleave(0, 2) == [("unlabeled", 0), ("unlabeled", 1)]
    order = interleave(4, 2)
    assert order == [("gold", 0), ("unlabeled", 0), ("gold", 1), ("gold", 2), ("unlabeled", 1), ("gold", 3)]
    order = interleave(4, 8)
    assert [k for k, _ in order].count("unlabeled") == 8
    assert all(order[i][0] == "unlabeled" or order[i + 1][0] == "unlabeled" for i in range(len(order) - 1))
    for n_gold, n_u in ((5, 3), (7, 13), (1, 1)):   # each source keeps its own order
        order = interleave(n_gold, n_u)
        assert [i for k, i in order if k == "gold"] == list(range(n_gold))
        assert [i for k, i in order if k == "unlabeled"] == list(range(n_u))


def write_config(folder, teacher, **extra) -> str:
    return write_kd_config(folder, teacher, epochs=1, **extra)


def metrics(run):
    return [orjson.loads(x) for x in (run / "metrics.jsonl").read_bytes().splitlines()]


@pytest.mark.parametrize(("ratio", "texts", "batches"), [(0.5, 15, 2), (1, 29, 4), (2, 58, 8)])
def test_the_ratio_sets_the_unlabelled_batches_of_an_epoch(tiny_io_teacher, in_tmp, runner, one_thread, ratio,
                                                           texts, batches):
    # 29 gold windows (24 sentences, 4 split) in 4 batches of 8; texts of one window each, 40 in the set
    write_lines(in_tmp / "u.txt", short_texts(40))
    config = write_config(in_tmp, tiny_io_teacher, data={"unlabeled": "u.txt"},
                          distill={"unlabeled_ratio": ratio, "cache_teacher": True})
    res = runner.invoke(app, ["distill", "--config", config, "--output", "run"])
    assert res.exit_code == 0, res.output
    summary = orjson.loads((in_tmp / "run/train_summary.json").read_bytes())
    assert summary["train_windows"] == 29 and summary["steps"] == 4 + batches
    assert summary["unlabeled"]["texts_per_epoch"] == texts == math.floor(ratio * 29 + 0.5)
    assert summary["unlabeled"]["batches_per_epoch"] == [batches] == [math.ceil(texts / 8)]
    lines = [x for x in metrics(in_tmp / "run") if x["kind"] == "train"]
    kinds = ["u" if "u_loss" in x else "g" for x in lines]
    assert kinds.count("u") == batches and kinds.count("g") == 4
    for line in lines:                                  # each kind logs its own terms, never the other's
        keys = set(line) - {"kind", "step", "epoch", "lr", "tokens_per_s"}
        if "u_loss" in line:
            assert keys == {"u_loss", "u_kd", "u_hidden"}
        else:
            assert {"loss", "ce", "kd", "hidden", "crf"} <= keys and not any(k.startswith("u_") for k in keys)
    epoch = next(x for x in metrics(in_tmp / "run") if x["kind"] == "epoch")
    assert {"loss", "ce", "kd", "u_loss", "u_kd", "u_hidden"} <= set(epoch) and "u_ce" not in epoch
    assert f"{texts} texts per epoch" in res.stderr
    if ratio == 2:   # 58 texts of a 40-text set: the cache is filled once and serves the repeats
        assert "teacher cache: 40 windows of 40 texts" in res.stderr
        assert summary["unlabeled"]["teacher_cache"]["rows_from_cache"] == texts
    else:            # no text comes back in one epoch: nothing to cache
        assert "no cache, it would save nothing" in res.stderr and summary["unlabeled"]["teacher_cache"] is None


def test_the_leak_filter_count_is_in_the_distill_log(tiny_io_teacher, in_tmp, runner, notes_file, one_thread):
    config = write_config(in_tmp, tiny_io_teacher, data={"unlabeled": str(notes_file)},
                          train={"max_steps": 2})
    res = runner.invoke(app, ["distill", "--config", config, "--output", "run"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.stderr.splitlines() if x.startswith("unlabelled: "))
    assert line.startswith(f"unlabelled: {notes_file} (text): 20 texts, ")
    assert "20 texts" in line and "1 empty lines skipped" in line and "1 duplicates dropped" in line
    assert "1 dropped as in dev (first at line 21)" in line


# -- validate ---------------------------------------------------------------------------------------------------------

def test_validate_reports_the_set(tiny_io_teacher, in_tmp, runner, notes_file):
    config = write_config(in_tmp, tiny_io_teacher, data={"test": str(DATA / "test.jsonl")})
    res = runner.invoke(app, ["validate", "--config", config, "--set", f"data.unlabeled={notes_file}"])
    assert res.exit_code == 0, res.output
    from nerkd.settings import load_settings
    from nerkd.stages.validate import run_validate

    report = run_validate(load_settings(config, [f"data.unlabeled={notes_file}"]))
    row = next(c for c in report.checks if c.name == "data unlabeled")
    assert row.status == "ok"
    for part in ("20 texts", "1 empty lines skipped", "1 duplicates dropped", "1 dropped as in dev (first at line 21)",
                 "windows", "leak filter: dev, test"):
        assert part in row.detail, row.detail
    assert "data unlabeled" in res.stdout


@pytest.mark.parametrize(("name", "content", "line", "message"), [
    ("u.txt", "Mme Martin à Lyon.\n\n".encode() + b"Visite \xff.\n", 3, "not valid UTF-8"),
    ("u.jsonl", b'{"text": "Mme Martin"}\n{"text": "ok"}\n{"text": oops}\n', 3, "JSON"),
])
def test_validate_fails_on_a_bad_line_naming_file_and_line(tiny_io_teacher, in_tmp, runner, name, content, line,
                                                           message):
    (in_tmp / name).write_bytes(content)
    config = write_config(in_tmp, tiny_io_teacher)
    res = runner.invoke(app, ["validate", "--config", config, "--set", f"data.unlabeled={name}"])
    assert res.exit_code == 1
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {name}:{line}: ") and message in errors[0]
    assert "Traceback" not in res.output


# -- the teacher cache ------------------------------------------------------------------------------------------------

def test_cached_teacher_outputs_give_the_on_the_fly_losses(tiny_io_teacher, notes_file, one_thread):
    obj = objective(tiny_io_teacher, crf=False, layers=(2, 4), student_layers=(2, 4))
    tok = load_tokenizer(tiny_io_teacher)
    batches = unlabelled_batches(tiny_io_teacher, notes_file)

    def losses():
        return [obj.unlabeled_loss(b, 1, keys)[0].item() for b, keys in batches]

    fly = losses()
    calls = []
    real = obj.teacher_forward

    def counting(*a, **k):
        calls.append(a[0].shape[0])
        return real(*a, **k)

    def filled(dtype, max_bytes=1 << 30):
        cache = TeacherCache(dtype, max_bytes)
        fill_cache(cache, transfer(notes_file), tok, obj.teacher_targets, torch.device("cpu"), "fp32", 8, None, None)
        return cache

    obj.teacher_cache = filled(torch.float32)              # exact storage: the same losses
    obj.teacher_forward = counting
    assert losses() == pytest.approx(fly, rel=1e-6, abs=1e-7)
    assert calls == [] and obj.teacher_cache.misses == 0   # later epochs pay only for the student
    windows = len(obj.teacher_cache)
    assert {k for _, keys in batches for k in keys} <= set(obj.teacher_cache.store)   # every window of every text

    obj.teacher_cache = filled(torch.float32, max_bytes=obj.teacher_cache.bytes // 2)   # half cached
    assert obj.teacher_cache.full and 0 < len(obj.teacher_cache) < windows
    calls.clear()
    assert losses() == pytest.approx(fly, rel=1e-6, abs=1e-7)
    assert 0 < sum(calls) < sum(len(k) for _, k in batches)   # the teacher ran on the uncached rows only

    obj.teacher_cache = filled(torch.float16)              # the shipped storage: 16 bits, close
    half = losses()
    assert half == pytest.approx(fly, rel=2e-3)
    obj.teacher_cache = filled(torch.float16, max_bytes=obj.teacher_cache.bytes // 3)
    assert losses() == pytest.approx(half, rel=1e-5)      # cached or not, a row's outputs are rounded the same way


# -- finetune, resume -------------------------------------------------------------------------------------------------

FINETUNE = [f"data.train={DATA / 'train.jsonl'}", f"data.dev={DATA / 'dev.jsonl'}",
            f"data.test={DATA / 'test.jsonl'}", f"data.label2id={DATA / 'label2id.json'}", "data.limit=16",
            "data.max_length=48", "data.stride=8", "train.batch_size=8", "train.log_every=1", "train.device=cpu",
            "distill.layer_map.teacher=[1,2]", "distill.layer_map.student=[1,2]"]


def finetune(runner, *args):
    return runner.invoke(app, ["finetune", *args, *[x for s in FINETUNE for x in ("--set", s)]])


def test_finetune_uses_the_set_with_a_teacher_and_says_it_cannot_without(tiny_bio, in_tmp, runner, notes_file,
                                                                         one_thread):
    res = finetune(runner, "--model", str(tiny_bio), "--output", "ce", "--epochs", "1", "--set",
                   f"data.unlabeled={notes_file}")
    assert res.exit_code == 0, res.output
    warnings = [x for x in res.stderr.splitlines() if "data.unlabeled" in x]
    assert warnings == ["data.unlabeled: not used by nerkd finetune without --teacher (gold CE only; unlabelled "
                        "texts need a teacher: nerkd distill or finetune --teacher use them)"]
    assert not any(x.startswith("warning:") for x in res.stderr.splitlines())
    assert not any("u_loss" in x for x in metrics(in_tmp / "ce"))

    res = finetune(runner, "--model", str(tiny_bio), "--teacher", str(tiny_bio), "--output", "kd", "--epochs", "1",
                   "--set", f"data.unlabeled={notes_file}")
    assert res.exit_code == 0, res.output
    assert "1 dropped as in dev (first at line 21)" in res.stderr
    lines = [x for x in metrics(in_tmp / "kd") if x["kind"] == "train"]
    assert any("u_loss" in x for x in lines) and any("ce" in x for x in lines)


def test_resume_refuses_another_set_or_ratio(tiny_io_teacher, in_tmp, runner, notes_file, one_thread):
    config = write_config(in_tmp, tiny_io_teacher, data={"unlabeled": str(notes_file)},
                          train={"checkpoint_every": 1, "max_steps": 2})
    args = ["distill", "--config", config, "--output", "run"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--resume", "--set", "distill.unlabeled_ratio=2"])
    assert res.exit_code == 1 and "distill.unlabeled_ratio 1.0 -> 2.0" in res.stderr.splitlines()[-1]
    write_lines(notes_file, [*NOTES[:19], NOTES[30], DEV_SENTENCE, "", NOTES[0]])   # same size, other content
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 1 and "data.unlabeled (sha256)" in res.stderr.splitlines()[-1]
