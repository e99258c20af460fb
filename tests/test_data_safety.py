"""Data safety (issue 22, items 1-5): no stage writes over its inputs, ``--overwrite`` never replaces
the user's files, the leftover cleaner removes only nerkd's temporaries, corrupt weights are refused,
and ``infer -o`` on a full disk leaves whole lines only."""

from __future__ import annotations

import shutil

import pytest

from nerkd.cli.app import app
from nerkd.models.ner import NerModel
from tests.helpers import DATA, write_kd_config

DATA_SETS = [f"data.train={DATA / 'train.jsonl'}", f"data.dev={DATA / 'dev.jsonl'}",
             f"data.label2id={DATA / 'label2id.json'}", "data.limit=8", "data.max_length=48", "data.stride=8",
             "train.batch_size=8", "train.device=cpu", "train.max_steps=1", "prune.max_sentences=4"]


def sets(*more: str) -> list[str]:
    return [x for s in [*DATA_SETS, *more] for x in ("--set", s)]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def teacher_copy(tiny_io_teacher, in_tmp):
    """A copy of the 4-layer teacher in the test's project folder (the session model stays untouched)."""
    return shutil.copytree(tiny_io_teacher, in_tmp / "X")


# -- 1. no stage writes over one of its inputs ------------------------------------------------------

@pytest.mark.parametrize("via", ["same", "symlink"])
def test_distill_refuses_its_teacher_as_output(teacher_copy, in_tmp, runner, via):
    before = snapshot(teacher_copy)
    config = write_kd_config(in_tmp, teacher_copy, epochs=1, train={"max_steps": 1})
    out = "X"
    if via == "symlink":
        (in_tmp / "link").symlink_to(teacher_copy, target_is_directory=True)
        out = "link"
    res = runner.invoke(app, ["distill", "--config", config, "--set", "teacher.model=X", "--output", out])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr) == [f"error: --output {out}: is the teacher (teacher.model); nerkd would write over "
                                 f"it: choose another folder"]
    assert snapshot(teacher_copy) == before and NerModel.load(teacher_copy).num_layers == 4


def test_finetune_refuses_a_folder_holding_its_label_file(tiny_bio, in_tmp, runner):
    out = in_tmp / "out"
    out.mkdir()
    shutil.copy(DATA / "label2id.json", out / "labels.json")       # data.label2id lives where nerkd writes labels.json
    before = snapshot(out)
    res = runner.invoke(app, ["finetune", "--model", str(tiny_bio), "--output", "out", "--overwrite", "--epochs", "1",
                              *sets(f"data.label2id={out / 'labels.json'}")])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr) == ["error: --output out: holds the data.label2id file (labels.json), which nerkd would "
                                 "write over: choose another folder"]
    assert snapshot(out) == before


def test_finetune_base_refuses_its_teacher_as_output(teacher_copy, in_tmp, runner):
    before = snapshot(teacher_copy)
    res = runner.invoke(app, ["finetune", "--base", "scratch", "--teacher", "X", "--output", "X", "--epochs", "1",
                              "--scratch-layers", "1", "--scratch-hidden", "32", *sets()])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr) == ["error: --output X: is the teacher (--teacher); nerkd would write over it: choose "
                                 "another folder"]
    assert snapshot(teacher_copy) == before


@pytest.mark.parametrize("command", ["prune", "export"])
def test_prune_and_export_refuse_a_symlink_to_their_model(teacher_copy, in_tmp, runner, command):
    (in_tmp / "link").symlink_to(teacher_copy, target_is_directory=True)
    before = snapshot(teacher_copy)
    extra = ["--format", "hf"] if command == "export" else []
    res = runner.invoke(app, [command, "--model", "X", "--output", "link", *extra, *sets()])
    assert res.exit_code == 1, res.output
    what = "the input model's folder (--model)" if command == "prune" else "the model being exported (--model)"
    assert lines(res.stderr)[-1] == f"error: --output link: is {what}; nerkd would write over it: choose another folder"
    assert snapshot(teacher_copy) == before


def test_infer_refuses_an_output_file_of_its_model(teacher_copy, in_tmp, runner):
    before = snapshot(teacher_copy)
    (in_tmp / "in.txt").write_text("Jean Dupont habite à Lyon.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", "X", "--input", "in.txt", "--output", "X/config.json"])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr) == ["error: --output X/config.json: is a file of the model's folder (--model); nerkd "
                                 "would write over it: choose another file"]
    res = runner.invoke(app, ["infer", "--model", "X", "--input", "in.txt", "--output", "in.txt"])
    assert res.exit_code == 1
    assert lines(res.stderr) == ["error: --output in.txt: is the --input file; nerkd would write over it: choose "
                                 "another file"]
    assert snapshot(teacher_copy) == before and (in_tmp / "in.txt").read_text(encoding="utf-8").startswith("Jean")


def test_bench_refuses_a_json_file_of_a_model(teacher_copy, in_tmp, runner):
    before = snapshot(teacher_copy)
    res = runner.invoke(app, ["bench", "--model", "X", "--json", "X/tokenizer.json", "-n", "2",
                              "--set", f"data.test={DATA / 'test.jsonl'}"])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr) == ["error: --json X/tokenizer.json: is a file of the model X's folder; nerkd would "
                                 "write over it: choose another file"]
    assert snapshot(teacher_copy) == before


def test_report_refuses_a_folder_where_it_would_write_over_its_data(tiny_bio, in_tmp, runner):
    out = in_tmp / "rep"
    out.mkdir()
    shutil.copy(DATA / "dev.jsonl", out / "report.json")
    before = snapshot(out)
    res = runner.invoke(app, ["report", "--model", str(tiny_bio), "--data", "rep/report.json", "--output", "rep"])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr)[-1] == ("error: --output rep: holds the --data file (report.json), which nerkd would "
                                     "write over: choose another folder")
    assert snapshot(out) == before


# -- 2. --overwrite never replaces the user's own files ---------------------------------------------

def users_folder(path):
    path.mkdir()
    for name, text in (("config.json", '{"mine": true}'), ("settings.yaml", "mine: true\n"), ("README.md", "# mine\n"),
                       ("keep.txt", "x")):
        (path / name).write_text(text, encoding="utf-8")
    return path


def test_prune_overwrite_refuses_to_replace_the_users_files(tiny_bio, in_tmp, runner):
    out = users_folder(in_tmp / "d")
    before = snapshot(out)
    res = runner.invoke(app, ["prune", "--model", str(tiny_bio), "--output", "d", "--overwrite", *sets()])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr)[-1] == ("error: --output d: holds your config.json, settings.yaml (not written by nerkd), "
                                     "which nerkd would replace: move them out of the folder or choose another folder")
    assert snapshot(out) == before                                  # README.md: prune does not write one, not named
    (out / "config.json").unlink()
    (out / "settings.yaml").unlink()
    res = runner.invoke(app, ["prune", "--model", str(tiny_bio), "--output", "d", "--overwrite", *sets()])
    assert res.exit_code == 0, res.output
    assert (out / "README.md").read_text(encoding="utf-8") == "# mine\n" and (out / "keep.txt").read_text() == "x"


def test_export_overwrite_refuses_to_replace_the_users_files(tiny_bio, in_tmp, runner):
    out = users_folder(in_tmp / "e")
    before = snapshot(out)
    res = runner.invoke(app, ["export", "--model", str(tiny_bio), "--format", "hf", "--output", "e", "--overwrite",
                              *sets("export.check_sentences=0")])
    assert res.exit_code == 1, res.output
    assert lines(res.stderr)[-1] == ("error: --output e: holds your README.md, config.json (not written by nerkd), "
                                     "which nerkd would replace: move them out of the folder or choose another folder")
    assert snapshot(out) == before


def test_a_marked_folder_keeps_refusing_to_replace_the_users_files(tiny_bio, tmp_path):
    from nerkd.models.ner import load_tokenizer
    from nerkd.rundir import RunFolder, RunFolderError

    out = tmp_path / "m"
    out.mkdir()
    (out / "settings.yaml").write_text("mine: true\n")
    NerModel.load(tiny_bio).save(out, tokenizer=load_tokenizer(tiny_bio), overwrite=True)   # marker: foreign
    with pytest.raises(RunFolderError, match=r"/m: holds your settings.yaml \(not written by nerkd\)"):
        with RunFolder(out, option=None):                  # a run's settings.yaml would replace the user's
            pass
    assert (out / "settings.yaml").read_text() == "mine: true\n"
    other = tmp_path / "o"
    other.mkdir()
    (other / "config.json").write_text("{}")
    with pytest.raises(RunFolderError, match="holds your config.json"):   # checked again as the model moves in
        NerModel.load(tiny_bio).save(other, tokenizer=load_tokenizer(tiny_bio), overwrite=True)
    assert (other / "config.json").read_text() == "{}" and not (other / "model.safetensors").exists()


# -- 3. the leftover cleaner removes nerkd's own temporaries only ----------------------------------

def test_a_hidden_backup_beside_the_output_is_never_a_leftover(tiny_bio, in_tmp, runner):
    art = in_tmp / "art"
    shutil.copytree(tiny_bio, art / "k6")
    backup = shutil.copytree(tiny_bio, art / ".k6.20261207")          # the user's backup of the model
    before = snapshot(backup)
    res = runner.invoke(app, ["prune", "--model", str(tiny_bio), "--output", "art/k6", *sets()])
    assert res.exit_code == 0, res.output
    assert "leftover" not in res.stderr
    assert snapshot(backup) == before


def test_only_marked_temporaries_are_cleaned(tmp_path):
    from nerkd import rundir

    out = tmp_path / "run"
    out.mkdir()
    marked = rundir.temp_folder(out, "save")
    unmarked = out / ".save.tmp-abcd1234"                              # nerkd's old name, no suffix, no marker
    unmarked.mkdir()
    (unmarked / "config.json").write_text("{}")
    assert rundir.clean_leftovers(out) == [f"run/{marked.name}"]
    assert unmarked.is_dir() and not marked.exists()


# -- 4. corrupt weights are refused (the sha256 nerkd recorded when it wrote them) ------------------

def flip_byte(path, where: float = 0.9) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def restore_verify():
    from nerkd import rundir

    yield
    rundir.set_verify(True)          # a --no-verify run sets it for the process; the next command resets it


def test_flipped_bytes_in_safetensors_are_refused(tiny_bio, in_tmp, runner, monkeypatch, restore_verify):
    from nerkd.errors import ModelLoadError

    model = shutil.copytree(tiny_bio, in_tmp / "m")
    flip_byte(model / "model.safetensors")                          # in the tensor data: safetensors loads it
    with pytest.raises(ModelLoadError, match=r"model.safetensors: its sha256 differs from the one nerkd recorded"):
        NerModel.load(model)
    (in_tmp / "in.txt").write_text("Jean Dupont habite à Lyon.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", "m", "--input", "in.txt", "--output", "out.jsonl"])
    assert res.exit_code == 1
    assert lines(res.stderr) == ["error: m/model.safetensors: its sha256 differs from the one nerkd recorded when it "
                                 "wrote this file (corrupt, or edited): restore it, or pass --no-verify "
                                 "(models.verify: false) to load it as it is"]
    assert not (in_tmp / "out.jsonl").exists()
    res = runner.invoke(app, ["infer", "--model", "m", "--input", "in.txt", "--output", "out.jsonl", "--no-verify"])
    assert res.exit_code == 0, res.output                            # weights edited on purpose
    res = runner.invoke(app, ["infer", "--model", "m", "--input", "in.txt", "--output", "out2.jsonl"])
    assert res.exit_code == 1                                        # --no-verify was for that command only
    monkeypatch.setenv("NERKD_MODELS__VERIFY", "false")
    res = runner.invoke(app, ["infer", "--model", "m", "--input", "in.txt", "--output", "out2.jsonl"])
    assert res.exit_code == 0, res.output
    monkeypatch.delenv("NERKD_MODELS__VERIFY")
    res = runner.invoke(app, ["prune", "--model", "m", "--output", "p", *sets("models.verify=false")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["prune", "--model", "m", "--output", "p2", *sets()])
    assert res.exit_code == 1 and "its sha256 differs" in res.stderr


def test_a_folder_without_recorded_hashes_loads_as_before(tiny_bio, tmp_path):
    from nerkd import rundir

    model = shutil.copytree(tiny_bio, tmp_path / "plain")
    (model / rundir.MARKER).unlink()                                 # a plain Hugging Face folder
    flip_byte(model / "model.safetensors")
    assert NerModel.load(model).num_layers == 2
    assert rundir.verify_weights(tiny_bio) == ["model.safetensors"]   # what nerkd wrote is checked


def test_flipped_bytes_in_an_onnx_export_are_refused(tiny_bio, tmp_path, restore_verify):
    pytest.importorskip("onnxruntime")
    from nerkd.errors import ModelLoadError
    from nerkd.export import export_onnx
    from nerkd.infer import Engine
    from nerkd.infer.onnx_backend import OnnxModel

    out = export_onnx(tiny_bio, tmp_path / "onnx", exporter="torchscript", texts=[]).output
    assert OnnxModel.load(out) is not None
    flip_byte(out / "model.onnx", 0.5)
    with pytest.raises(ModelLoadError, match=r"onnx/model.onnx: its sha256 differs"):
        Engine.load(out, backend="auto")
    assert OnnxModel.load(out, verify=False) is not None


# -- 5. a full disk under infer -o: whole lines only, and the file named ----------------------------

def test_a_full_disk_leaves_whole_lines_and_names_the_file(tiny_bio, in_tmp, runner, monkeypatch):
    import errno

    import orjson

    from nerkd.stages import infer as stage

    (in_tmp / "in.txt").write_text("".join(f"Jean Dupont {i} habite à Lyon.\n" for i in range(12)), encoding="utf-8")
    real_open = stage.open_for_option

    class FullDisk:
        """The output file; the disk fills up half-way through the third chunk of lines."""

        def __init__(self, f):
            self.f, self.calls = f, 0

        def write(self, data):
            data = bytes(data)
            if data:
                self.calls += 1
            if self.calls == 3:
                self.f.write(data[:len(data) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def open_(path, mode, option, **kwargs):
        f = real_open(path, mode, option, **kwargs)
        return FullDisk(f) if "w" in mode else f

    monkeypatch.setattr(stage, "open_for_option", open_)
    res = runner.invoke(app, ["infer", "--model", str(tiny_bio), "--input", "in.txt", "--output", "out.jsonl",
                              "--chunk-size", "2"])
    assert res.exit_code == 1
    assert lines(res.stderr)[-1] == ("error: --output out.jsonl: cannot write (no space left on device); cut back to "
                                     "its last whole line (4 lines)")
    written = (in_tmp / "out.jsonl").read_bytes()
    assert written.endswith(b"\n")
    assert [orjson.loads(line)["text"] for line in written.splitlines()] == [
        f"Jean Dupont {i} habite à Lyon." for i in range(4)]
