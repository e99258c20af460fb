"""The distillation objective (IO teacher -> BIO student) and ``nerkd distill`` end to end."""

from __future__ import annotations

import copy

import orjson
import pytest
import torch

from nerkd.data.dataset import encode_split, read_split
from nerkd.data.encode import collate
from nerkd.data.labels import LabelSpace, type_mapping
from nerkd.errors import SettingsError
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.models.student import student_from_teacher
from nerkd.settings import DistillSettings, LayerMap, Settings, load_settings
from nerkd.train.kd import DistillObjective, check_layer_map
from tests.helpers import DATA, write_kd_config

BIO = LabelSpace.from_file(DATA / "label2id.json")


def distill_settings(phases=None, teacher=(2, 4), student=(1, 2), temperature=2.0) -> DistillSettings:
    phases = phases or [{"from_epoch": 1, "weights": {"ce": 1.0, "kd": 0.5, "hidden": 0.3, "crf": 0.2}}]
    return DistillSettings(temperature=temperature, layer_map={"teacher": list(teacher), "student": list(student)},
                           phases=phases)


def batch_for(model_dir, space=BIO, n=6):
    settings = Settings(data={"train": str(DATA / "train.jsonl"), "limit": n, "max_length": 48, "stride": 8})
    split = read_split("train", DATA / "train.jsonl", settings.data)
    tok = load_tokenizer(model_dir)
    encode_split(split, tok, space, settings.data)
    return collate(split.windows, tok.pad_token_id)


def make_objective(teacher_dir, space=BIO, layers=(2, 4), crf=False, teacher_crf=False, **kw):
    teacher = NerModel.load(teacher_dir)
    if teacher_crf:
        from torchcrf import CRF

        teacher.crf = CRF(teacher.num_labels, batch_first=True)
    torch.manual_seed(0)
    student = student_from_teacher(teacher, list(layers), space, crf=crf)
    mapping = type_mapping(teacher.labels, space)
    return DistillObjective(student, teacher, mapping, distill_settings(**kw))


def test_phase_schedule_picks_the_weights_in_force():
    ds = DistillSettings(phases=[{"from_epoch": 1, "weights": [1, 0.5, 0.1, 0.1]},
                                 {"from_epoch": 3, "weights": {"ce": 1, "kd": 1, "hidden": 0.2, "crf": 0}}])
    assert [ds.weights_for_epoch(e).kd for e in (1, 2, 3, 7)] == [0.5, 0.5, 1.0, 1.0]
    assert ds.weights_for_epoch(2).hidden == 0.1 and ds.weights_for_epoch(3).crf == 0


def test_layer_map_is_checked_against_both_depths():
    assert check_layer_map(LayerMap(teacher=[0, 4], student=[0, 2]), 4, 2) == ([0, 4], [0, 2])
    with pytest.raises(SettingsError, match=r"distill.layer_map.*teacher \[5\]"):
        check_layer_map(LayerMap(teacher=[5], student=[1]), 4, 2)
    with pytest.raises(SettingsError, match=r"distill.layer_map.*student \[3\]"):
        check_layer_map(LayerMap(teacher=[4], student=[3]), 4, 2)


def test_objective_terms_weights_and_total(tiny_io_teacher, capsys):
    obj = make_objective(tiny_io_teacher)
    assert "L_CRF skipped" in capsys.readouterr().err   # said once, at construction
    batch = batch_for(tiny_io_teacher)
    total, logged = obj.loss(batch, epoch=1)
    assert set(logged) == {"ce", "kd", "hidden", "crf", "w_ce", "w_kd", "w_hidden", "w_crf", "total"}
    assert logged["w_kd"] == 0.5 and logged["w_hidden"] == 0.3 and logged["w_crf"] == 0.0   # no CRF: skipped
    expected = sum(logged[f"w_{k}"] * float(logged[k]) for k in ("ce", "kd", "hidden", "crf"))
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert float(logged["ce"]) > 0 and float(logged["kd"]) > 0 and 0 < float(logged["hidden"]) < 2
    total.backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    assert obj.model.encoder_model.classifier.weight.grad is not None
    assert "L_CRF" not in capsys.readouterr().err   # not repeated per step


def test_kd_skips_data_only_types(tiny_io_teacher):
    space = LabelSpace(("O", "B-DATE", "I-DATE", "B-PER", "I-PER"))
    obj = make_objective(tiny_io_teacher, space=space, layers=(4,), teacher=(4,), student=(1,))
    assert obj.kd_ok.tolist() == [True, False, False, True, True]


def test_kd_term_is_zero_when_student_mirrors_teacher_types(tiny_io_teacher):
    """A BIO student whose per-type mass equals the IO teacher's gets KD 0 (marginalised KD)."""
    obj = make_objective(tiny_io_teacher)
    batch = batch_for(tiny_io_teacher, n=3)
    with torch.no_grad():
        t_logits = obj.teacher(batch["input_ids"], batch["attention_mask"]).logits
    t_ids, s_ids = obj.teacher.labels.label2id, BIO.label2id
    # student logits: B-X and I-X each get half of the teacher's I-X mass (log 0.5 shift); MISC folds into O
    t_probs = t_logits.softmax(-1)
    s_probs = torch.zeros(*t_probs.shape[:2], len(BIO))
    s_probs[..., s_ids["O"]] = t_probs[..., t_ids["O"]] + t_probs[..., t_ids["I-MISC"]]
    for etype in ("LOC", "ORG", "PER"):
        s_probs[..., s_ids[f"B-{etype}"]] = t_probs[..., t_ids[f"I-{etype}"]] * 0.3
        s_probs[..., s_ids[f"I-{etype}"]] = t_probs[..., t_ids[f"I-{etype}"]] * 0.7
    from nerkd.losses import kd_loss

    mask = batch["labels"] != -100
    got = kd_loss(s_probs.log(), t_logits, mask, 1.0, obj.student_cols, obj.teacher_cols, obj.n_shared)
    assert got.item() == pytest.approx(0.0, abs=1e-5)
    shifted = s_probs.log().clone()
    shifted[..., s_ids["O"]] += 2.0
    assert kd_loss(shifted, t_logits, mask, 1.0, obj.student_cols, obj.teacher_cols, obj.n_shared).item() > 1e-3


def test_same_label_space_distils_the_full_distribution(tiny_crf):
    """BIO teacher -> BIO student: KD keeps B vs I apart (a type-level KD would give 0 here)."""
    teacher = NerModel.load(tiny_crf)
    student = student_from_teacher(teacher, [2], teacher.labels, crf=True)
    obj = DistillObjective(student, teacher, type_mapping(teacher.labels, BIO), distill_settings(teacher=[2],
                                                                                                 student=[1]))
    assert obj.kd_per_label and obj.n_shared == len(BIO) and obj.pairs is None
    from nerkd.losses import kd_loss

    b, i = BIO.label2id["B-PER"], BIO.label2id["I-PER"]
    t = torch.full((1, 1, len(BIO)), -10.0)
    t[0, 0, b] = 5.0
    s = t.clone()
    s[0, 0, [b, i]] = s[0, 0, [i, b]]          # same PER mass, B and I swapped
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert kd_loss(s, t, mask, 1.0, obj.student_cols, obj.teacher_cols, obj.n_shared).item() > 1.0


def test_a_few_optimizer_steps_reduce_the_loss(tiny_io_teacher):
    obj = make_objective(tiny_io_teacher, crf=True, teacher_crf=True)
    assert obj.use_crf and obj.pairs is not None        # IO teacher CRF -> BIO student CRF: mapped scores
    batch = batch_for(tiny_io_teacher, n=4)
    teacher_before = copy.deepcopy(obj.teacher.state_dict())
    params = [p for m in (obj.model, *obj.trainable_extras()) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3)
    obj.model.train()
    losses, logged = [], {}
    for _ in range(8):
        total, logged = obj.loss(batch, epoch=1)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < losses[0] * 0.8, losses
    assert logged["w_crf"] == 0.2 and float(logged["crf"]) > 0
    assert all(torch.equal(v, obj.teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert not obj.teacher.training


def test_projections_when_hidden_sizes_differ(tiny_io_teacher, tmp_path):
    from nerkd.models.scratch import tiny_config
    from nerkd.models.student import student_from_config

    tok = load_tokenizer(tiny_io_teacher)
    cfg = tiny_config(len(tok), ["O"], layers=2, hidden=32, heads=2, pad_token_id=tok.pad_token_id)
    cfg.save_pretrained(tmp_path / "small")
    tok.save_pretrained(tmp_path / "small")
    student = student_from_config(tmp_path / "small", BIO, crf=False, teacher_tokenizer=tok)
    teacher = NerModel.load(tiny_io_teacher)
    obj = DistillObjective(student, teacher, type_mapping(teacher.labels, BIO), distill_settings())
    (proj,) = obj.trainable_extras()
    assert len(proj) == 2 and proj[0].in_features == 32 and proj[0].out_features == 64
    total, _ = obj.loss(batch_for(tiny_io_teacher), epoch=1)
    total.backward()
    assert proj[0].weight.grad is not None and proj[0].weight.grad.abs().sum() > 0


def test_objective_rejects_a_layer_map_deeper_than_the_student(tiny_io_teacher):
    with pytest.raises(SettingsError, match="distill.layer_map"):
        make_objective(tiny_io_teacher, layers=(4,), teacher=(2, 4), student=(1, 2))


# -- the command ----------------------------------------------------------------------------------

def write_config(folder, teacher, **extra) -> str:
    return write_kd_config(folder, teacher, epochs=2, **extra)


def test_cli_distill_writes_a_loadable_student(tiny_io_teacher, in_tmp, runner):
    from nerkd.cli.app import app

    config = write_config(in_tmp, tiny_io_teacher)
    res = runner.invoke(app, ["distill", "--config", config, "--set", "train.max_steps=4",
                              "--output", "run"])
    assert res.exit_code == 0, res.output
    run = in_tmp / "run"
    for name in ("config.json", "model.safetensors", "settings.yaml", "labels.json", "metrics.jsonl",
                 "train_summary.json", "tokenizer.json"):
        assert (run / name).is_file(), name
    labels = orjson.loads((run / "labels.json").read_bytes())
    assert labels["shared"] == ["O", "LOC", "ORG", "PER"] and labels["teacher_only"] == ["MISC"]
    assert labels["classifier_init"]["B-PER"] == "I-PER" and labels["kept_teacher_layers"] == [2, 4]
    summary = orjson.loads((run / "train_summary.json").read_bytes())
    assert summary["steps"] == 4
    lines = [orjson.loads(x) for x in (run / "metrics.jsonl").read_bytes().splitlines()]
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert train_lines and {"ce", "kd", "hidden", "w_kd"} <= set(train_lines[0])
    student = NerModel.load(run)
    assert student.labels == BIO and student.num_layers == 2
    assert load_settings(run / "settings.yaml").train.max_steps == 4
    assert "train" in res.output and "windows" in res.output          # split counts reported
    state = orjson.loads((in_tmp / ".nerkd" / "state.json").read_bytes())
    assert state["outputs"]["distill"] == "run"


def test_cli_distill_bad_layer_map_is_one_line(tiny_io_teacher, in_tmp, runner):
    from nerkd.cli.app import app

    config = write_config(in_tmp, tiny_io_teacher)
    res = runner.invoke(app, ["distill", "--config", config, "--set", "distill.layer_map.student=[1,3]"])
    assert res.exit_code == 1
    assert "distill.layer_map" in res.output and "Traceback" not in res.output


def test_cli_distill_help_has_example(runner):
    from nerkd.cli.app import app

    res = runner.invoke(app, ["distill", "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "nerkd distill --" in res.output  # its paths: tests/test_help.py
    for opt in ("--teacher", "--output", "--resume", "--set"):
        assert opt in res.output


# -- issue 12: a fresh run inherits nothing; Ctrl-C says how to resume; resume checks the settings ------

def interrupt_at(monkeypatch, call: int) -> None:
    """Ctrl-C at the ``call``-th loss of the student (a KeyboardInterrupt, as the terminal sends it)."""
    real, calls = DistillObjective.loss, {"n": 0}

    def loss(self, batch, epoch):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(self, batch, epoch)

    monkeypatch.setattr(DistillObjective, "loss", loss)


def test_cli_distill_fresh_run_interrupt_and_resume(tiny_io_teacher, in_tmp, runner, monkeypatch):
    from nerkd.cli.app import app

    config = write_config(in_tmp, tiny_io_teacher, train={"checkpoint_every": 1, "max_steps": 4})
    args = ["distill", "--config", config, "--output", "run"]
    assert runner.invoke(app, args).exit_code == 0                      # a finished run
    (in_tmp / "run" / "notes.md").write_text("mine")
    with monkeypatch.context() as m:                                    # a new run, Ctrl-C before any checkpoint
        interrupt_at(m, 1)
        res = runner.invoke(app, args)
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == "error: interrupted before the first checkpoint: nothing to resume"
    run = in_tmp / "run"
    assert not (run / "checkpoints").exists() and not (run / "model.safetensors").exists()
    assert not (run / "train_summary.json").exists() and (run / "notes.md").read_text() == "mine"
    assert "removed the previous run's checkpoints/last" in res.stderr
    res = runner.invoke(app, [*args, "--resume"])                       # not the old, finished run
    assert res.exit_code == 1 and "nothing to resume in run" in res.stderr

    with monkeypatch.context() as m:                                    # Ctrl-C after the checkpoint of step 2
        interrupt_at(m, 3)
        res = runner.invoke(app, args)
    assert res.exit_code == 130
    assert res.stderr.splitlines()[-1] == ("error: interrupted: checkpoint at run/checkpoints/last (epoch 1, step 2); "
                                           "resume with the same command plus --resume")
    assert not (run / ".nerkd.lock").exists()
    res = runner.invoke(app, [*args, "--resume", "--set", "distill.temperature=3"])
    assert res.exit_code == 1
    assert "the run changed (distill.temperature 2.5 -> 3.0)" in res.stderr.splitlines()[-1]
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming run/checkpoints/last: epoch 1, batch 2, step 2" in res.stderr
    assert orjson.loads((run / "train_summary.json").read_bytes())["steps"] == 4
    assert b"\0" not in (run / "metrics.jsonl").read_bytes()
