"""Output folders (issue 12, items 1-5 and 8): nothing foreign deleted, models replaced as a unit, fresh
runs inherit nothing, one writer at a time, leftovers of killed writes cleaned, umask permissions, a
run folder without a model never offered to the next stage."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import orjson
import pytest
import torch
from torch import nn

from nerkd import rundir
from nerkd.errors import TrainingError
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.project import Project
from nerkd.rundir import LOCK, MARKER, RunFolder, RunFolderError, RunLock
from nerkd.train import checkpoint
from tests.helpers import DATA

PRUNE_SETS = ["--set", f"data.dev={DATA / 'dev.jsonl'}", "--set", f"data.label2id={DATA / 'label2id.json'}",
              "--set", "prune.max_sentences=8", "--set", "train.device=cpu"]


def prune_cli(runner, model, output, *extra):
    from nerkd.cli.app import app

    return runner.invoke(app, ["prune", "--model", str(model), "--rate", "0.25", "--output", str(output),
                               *PRUNE_SETS, *extra])


def foreign_folder(path):
    (path / "sub").mkdir(parents=True)
    (path / "keep.txt").write_text("x")
    (path / "sub" / "notes.txt").write_text("y")
    return path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- 1. never delete what nerkd did not write ----------------------------------------------------

def test_prune_refuses_a_folder_that_is_not_nerkds(tiny_bio, in_tmp, runner):
    out = foreign_folder(in_tmp / "d")
    res = prune_cli(runner, tiny_bio, "d")
    assert res.exit_code == 1
    assert lines(res.stderr) == ["error: --output d: folder exists and is not a nerkd model folder (it holds "
                                 "keep.txt, sub/); choose an empty folder or pass --overwrite"]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "sub"]          # untouched, no lock left


def test_prune_overwrite_keeps_the_folders_files(tiny_bio, in_tmp, runner):
    out = foreign_folder(in_tmp / "d")
    res = prune_cli(runner, tiny_bio, "d", "--overwrite")
    assert res.exit_code == 0, res.output
    assert (out / "keep.txt").read_text() == "x" and (out / "sub" / "notes.txt").read_text() == "y"
    assert NerModel.load(out).heads != [4, 4] and (out / "head_importance.json").is_file()
    assert sorted(orjson.loads((out / MARKER).read_bytes())["foreign"]) == ["keep.txt", "sub"]
    assert not (out / LOCK).exists()
    # a second prune into what is now a nerkd folder: no --overwrite needed, the user's files stay
    res = prune_cli(runner, tiny_bio, "d")
    assert res.exit_code == 0, res.output
    assert (out / "keep.txt").is_file() and (out / "sub" / "notes.txt").is_file()


def test_save_replaces_a_model_as_a_unit_and_keeps_other_files(tiny_bio, tiny_crf, tmp_path):
    out = tmp_path / "m"
    crf_model = NerModel.load(tiny_crf)
    crf_model.save(out, tokenizer=load_tokenizer(tiny_crf))
    assert (out / "crf.safetensors").is_file()
    (out / "keep.txt").write_text("mine")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "mine.txt").write_text("mine too")
    NerModel.load(tiny_bio).save(out, tokenizer=load_tokenizer(tiny_bio))
    assert not (out / "crf.safetensors").exists()                     # the old model's file, not the new one's
    assert (out / "keep.txt").read_text() == "mine" and (out / "checkpoints" / "mine.txt").is_file()
    reloaded = NerModel.load(out)
    assert reloaded.crf is None
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(),
                                                 NerModel.load(tiny_bio).state_dict().values(), strict=True))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]   # no temporaries
    assert not [p.name for p in tmp_path.iterdir() if p.name != "m"]   # nothing beside the folder either


def test_a_crash_while_saving_never_leaves_a_mixed_model(tiny_bio, tiny_crf, tmp_path, monkeypatch):
    out = tmp_path / "m"
    NerModel.load(tiny_crf).save(out, tokenizer=load_tokenizer(tiny_crf))
    real, calls = os.replace, []

    def dies_on_second_file(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError("killed")
        real(a, b)

    monkeypatch.setattr(rundir.os, "replace", dies_on_second_file)
    with pytest.raises(OSError, match="killed"):                  # another model (other config): config.json last
        NerModel.load(tiny_bio).save(out, tokenizer=load_tokenizer(tiny_bio))
    assert not rundir.has_model(out) and not (out / "config.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".save.tmp-")]
    model = NerModel.load(tiny_crf)
    for p in model.parameters():
        p.data.add_(1.0)
    NerModel.load(tiny_crf).save(out, tokenizer=load_tokenizer(tiny_crf))
    calls.clear()
    with pytest.raises(OSError, match="killed"):                  # the same config (a better epoch): weights last
        model.save(out, tokenizer=load_tokenizer(tiny_crf))
    assert calls[0] == out / "config.json"
    before = NerModel.load(tiny_crf).state_dict()
    assert all(torch.equal(v, before[k]) for k, v in NerModel.load(out).state_dict().items())   # still the old one


def test_save_refuses_a_foreign_folder_and_never_deletes_its_files(tiny_bio, tiny_crf, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "vocab.txt").write_text("the user's own vocabulary")     # a name nerkd could write, but did not
    with pytest.raises(RunFolderError, match=r"d: folder exists and is not a nerkd model folder \(it holds "
                                             r"vocab.txt\); choose an empty folder or pass overwrite=True"):
        NerModel.load(tiny_bio).save(out)
    NerModel.load(tiny_crf).save(out, tokenizer=load_tokenizer(tiny_crf), overwrite=True)
    NerModel.load(tiny_bio).save(out, tokenizer=load_tokenizer(tiny_bio))
    assert (out / "vocab.txt").read_text() == "the user's own vocabulary"
    assert not (out / "crf.safetensors").exists() and NerModel.load(out).crf is None


def test_folders_written_before_the_marker_are_nerkds(tmp_path):
    def folder(name, **files):
        path = tmp_path / name
        path.mkdir()
        for file, text in files.items():
            (path / file.replace("_json", ".json").replace("_yaml", ".yaml")).write_text(text)
        return path

    assert rundir.is_nerkd_folder(folder("model", config_json='{"nerkd": {"crf": false}}', notes="x"))
    assert rundir.is_nerkd_folder(folder("killed", settings_yaml="{}", labels_json="{}"))
    for path in (folder("hf", config_json='{"model_type": "camembert"}'), folder("yaml", settings_yaml="{}")):
        assert not rundir.is_nerkd_folder(path)
        with pytest.raises(RunFolderError, match="is not a nerkd model folder"):
            rundir.check_output(path)
    marker = rundir.adopt(tmp_path / "model")                   # unknown names there stay the user's
    assert marker["foreign"] == ["notes"]


def test_distill_and_finetune_refuse_a_foreign_output_before_loading_anything(in_tmp, runner, monkeypatch):
    from nerkd.cli.app import app

    monkeypatch.setattr("nerkd.data.dataset.load_splits", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr("nerkd.stages.finetune.load_training_splits", lambda *a, **k: pytest.fail("data loaded"))
    foreign_folder(in_tmp / "artifacts")
    for args in (["distill", "--output", "artifacts"], ["finetune", "--base", "scratch", "--output", "artifacts"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        assert lines(res.stderr) == ["error: --output artifacts: folder exists and is not a nerkd model folder (it "
                                     "holds keep.txt, sub/); choose an empty folder or pass --overwrite"]
    assert sorted(p.name for p in (in_tmp / "artifacts").iterdir()) == ["keep.txt", "sub"]


# -- 2. a fresh run inherits nothing ---------------------------------------------------------------

def test_fresh_run_removes_the_previous_runs_files_only(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "last").mkdir(parents=True)
    for name in ("model.safetensors", "train_state.pt", "state.json"):
        (out / "checkpoints" / "last" / name).write_text("{}")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "settings.yaml", "labels.json",
                 "metrics.jsonl", "train_summary.json", "notes.md"):
        (out / name).write_text('{"nerkd": {}}')
    (out / "checkpoints" / "mine").mkdir()
    messages = []
    with RunFolder(out, log=messages.append) as run:
        run.fresh_start()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "checkpoints", "notes.md"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["mine"]
    assert messages == [f"new run in {out}: removed the previous run's checkpoints/last, config.json, "
                        "model.safetensors, tokenizer.json, labels.json, metrics.jsonl, settings.yaml, "
                        "train_summary.json (use --resume to continue it)"]
    with pytest.raises(TrainingError, match="nothing to resume"):
        RunFolder(out, resume=True).__enter__()


def test_metrics_log_never_grows_the_file(tmp_path):
    from nerkd.train.logs import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl", True)
    log.write({"step": 1})
    size = log.size()
    assert log.truncate(size + 2769) == 2769                    # shorter than recorded: kept, the gap returned
    assert (tmp_path / "metrics.jsonl").read_bytes() == b'{"step":1}\n'
    assert log.truncate(3) == 0 and (tmp_path / "metrics.jsonl").read_bytes() == b'{"s'


# -- 3. one writer at a time -------------------------------------------------------------------------

@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_is_refused_with_the_pid_holding_the_lock(tiny_bio, in_tmp, runner, live_pid):
    out = in_tmp / "d"
    out.mkdir()
    (out / LOCK).write_text(f"{live_pid}\n")
    res = prune_cli(runner, tiny_bio, "d")
    assert res.exit_code == 1
    assert lines(res.stderr) == [f"error: --output d: another nerkd run (PID {live_pid}) is writing to this folder "
                                 f"(lock d/{LOCK}); wait for it to end, or delete the lock file if that process is "
                                 "not nerkd"]
    assert (out / LOCK).read_text() == f"{live_pid}\n" and not (out / "config.json").exists()


def test_a_stale_lock_is_taken_over_and_released(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK).write_bytes(orjson.dumps({"pid": pid}))
    messages = []
    with RunFolder(out, log=messages.append):
        owner = orjson.loads((out / LOCK).read_bytes())
        assert owner["pid"] == os.getpid()
        with pytest.raises(RunFolderError, match=rf"another nerkd run \(PID {os.getpid()}\)"):
            RunLock(out).acquire()                            # the same folder, a second writer
    assert messages == [f"{out}: took over a stale lock (PID {pid} has ended)"]
    assert list(out.iterdir()) == []                           # released, and no marker: nothing was written
    with pytest.raises(RuntimeError, match="boom"), RunFolder(out):
        raise RuntimeError("boom")
    assert not (out / LOCK).exists()                           # released on error too


def test_a_lock_from_another_machine_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_bytes(orjson.dumps({"pid": dead_pid(), "host": "some-other-host"}))
    with pytest.raises(RunFolderError, match="on some-other-host"):
        RunLock(tmp_path).acquire()


def test_under_torchrun_only_rank_0_locks(tmp_path, live_pid):
    (tmp_path / LOCK).write_text(str(live_pid))
    with RunFolder(tmp_path, main=False) as run:              # another rank: neither checks nor locks
        run.fresh_start()
    assert (tmp_path / LOCK).read_text() == str(live_pid)


# -- 4. leftovers of killed writes ---------------------------------------------------------------

def test_leftovers_of_killed_writes_are_cleaned_and_nothing_else(tiny_bio, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_bio, out)
    ckpt = out / "checkpoints"
    for name in ("last", ".last.old"):
        (ckpt / name).mkdir(parents=True)
    killed = rundir.temp_folder(ckpt, "last")                          # save_last killed mid-way
    for folder in (ckpt / "last", ckpt / ".last.old", killed):
        for f in ("model.safetensors", "train_state.pt", "state.json"):
            (folder / f).write_text("{}")
    rundir.temp_folder(out, "save")                                    # NerModel.save killed mid-way
    (out / ".settings.yaml.ab12cd_3.nerkd-tmp").write_text("half")     # atomic_write killed mid-way
    (out / f"{LOCK}.stale-123").write_text("{}")
    (out / ".mine.tmp").write_text("the user's")                       # not nerkd temporary names
    (out / ".hidden").mkdir()
    (out / ".save.tmp-abc12345.nerkd-tmp").mkdir()                    # nerkd's name without nerkd's marker
    (out / ".settings.yaml.ab12cd_3.tmp").write_text("x")
    shutil.copytree(tiny_bio, tmp_path / ".run.old")                   # beside the folder: never touched
    shutil.copytree(tiny_bio, tmp_path / ".run.k2j4l5m6")
    messages = []
    with RunFolder(out, resume=True, log=messages.append):
        pass
    assert sorted(p.name for p in ckpt.iterdir()) == ["last"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        ".hidden", ".mine.tmp", MARKER, ".save.tmp-abc12345.nerkd-tmp", ".settings.yaml.ab12cd_3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.k2j4l5m6", ".run.old", "run"]
    with RunFolder(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()                     # a folder it made and left empty is removed
    assert len(messages) == 1 and messages[0].startswith("removed 5 leftovers of interrupted writes: ")


def test_the_only_complete_checkpoint_is_not_a_leftover(tmp_path):
    old = tmp_path / "checkpoints" / ".last.old"           # killed between the two renames of save_last
    old.mkdir(parents=True)
    for f in ("model.safetensors", "train_state.pt", "state.json"):
        (old / f).write_text("{}")
    assert rundir.clean_leftovers(tmp_path) == []
    assert checkpoint.find_last(tmp_path) == old


# -- 5. file modes ---------------------------------------------------------------------------------

def test_weights_and_checkpoints_get_the_umask_permissions(tiny_crf, tmp_path):
    previous = os.umask(0o027)
    try:
        plain = tmp_path / "plain"
        plain.write_text("x")
        (tmp_path / "plain_dir").mkdir()
        file_mode, dir_mode = stat.S_IMODE(plain.stat().st_mode), stat.S_IMODE((tmp_path / "plain_dir").stat().st_mode)
        out = tmp_path / "m"
        model = NerModel.load(tiny_crf)
        model.save(out, tokenizer=load_tokenizer(tiny_crf))
        optimizer = torch.optim.AdamW(model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        last = checkpoint.save_last(out, model=model, extras=[nn.Linear(2, 2)], optimizer=optimizer,
                                    scheduler=scheduler, scaler=None, rng=[checkpoint.rng_state()], state={"step": 1})
    finally:
        os.umask(previous)
    assert file_mode == 0o640 and dir_mode == 0o750
    files = [p for p in (*out.iterdir(), *last.iterdir()) if p.is_file()]
    assert {"model.safetensors", "crf.safetensors", "extras.safetensors", "train_state.pt"} <= {p.name for p in files}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: file_mode for p in files}
    assert stat.S_IMODE(last.stat().st_mode) == dir_mode and stat.S_IMODE(out.stat().st_mode) == dir_mode


# -- 8. a run folder without a model is not the last output ------------------------------------------

def test_a_folder_without_a_model_is_never_the_default_input(tiny_bio, in_tmp):
    student = in_tmp / "artifacts" / "student"
    student.mkdir(parents=True)
    (student / "settings.yaml").write_text("{}")                 # a distill killed before its first save
    (student / "labels.json").write_text("{}")
    project = Project.discover()
    assert project.default_input("prune", "artifacts") is None
    assert project.default_input("finetune", "artifacts") is None
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "pruned")
    assert project.default_input("finetune", "artifacts") == in_tmp / "artifacts" / "pruned"
    shutil.copytree(tiny_bio, student, dirs_exist_ok=True)
    assert project.default_input("prune", "artifacts") == student
    elsewhere = in_tmp / "runs" / "s2"
    elsewhere.mkdir(parents=True)
    project.remember_output("distill", elsewhere)               # the last distill, then killed: not an older one
    assert Project.discover().default_input("prune", "artifacts") is None


def test_resume_with_nothing_to_resume_fails_before_loading(tiny_bio, in_tmp, runner, monkeypatch):
    from nerkd.cli.app import app

    monkeypatch.setattr("nerkd.data.dataset.load_splits", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr("nerkd.stages.finetune.load_training_splits", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr(NerModel, "load", lambda *a, **k: pytest.fail("model loaded"))
    for args in (["distill", "--output", "run", "--resume"],
                 ["finetune", "--model", str(tiny_bio), "--output", "run", "--resume"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        assert lines(res.stderr) == ["error: nothing to resume in run: no checkpoints/last (run without --resume)"]
    assert not (in_tmp / "run").exists()
