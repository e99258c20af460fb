"""Issue #12 items 6 and 7: file-system, corrupt-file and missing-model errors are one line.

Each CLI case checks exit code 1, one ``error:`` line on stderr (the last one), and no traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import typer

from nerkd.cli.app import app
from nerkd.cli.errors import _known_external, known_errors

from .test_distill import write_config
from .test_finetune import invoke as finetune


def one_error(res, *needles: str, only: bool = False) -> str:
    """The single ``error:`` line of a failed command (``only``: stderr holds nothing else)."""
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output and "Traceback" not in res.stderr
    if only:
        assert lines == errors, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def texts(in_tmp) -> Path:
    path = in_tmp / "texts.txt"
    path.write_text("Jean habite à Paris.\n", encoding="utf-8")
    return path


def infer(runner, *args: str):
    return runner.invoke(app, ["infer", "--device", "cpu", *args])


# -- item 6: --input / --output paths -------------------------------------------------------------

def test_input_folder_is_one_line_exit_1(runner, tiny_bio, in_tmp):
    (in_tmp / "data").mkdir()
    res = infer(runner, "--model", str(tiny_bio), "--input", "data")
    one_error(res, "--input data: is a folder, not a file", only=True)      # was Typer's usage error, exit 2


def test_missing_input_names_the_option(runner, tiny_bio, in_tmp):
    res = infer(runner, "--model", str(tiny_bio), "--input", "nope.txt")
    one_error(res, "--input nope.txt: no such file", only=True)


def test_output_under_a_file_is_one_line(runner, tiny_bio, texts):
    """A real failure: the output's "folder" is a regular file (mkdir raised FileExistsError before)."""
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "texts.txt/sub/out.jsonl")
    one_error(res, "--output texts.txt/sub/out.jsonl: texts.txt is a file, not a folder", only=True)


def test_output_that_is_a_folder_or_the_input(runner, tiny_bio, texts):
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", ".")
    one_error(res, "--output .: is a folder, not a file", only=True)
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "texts.txt")
    one_error(res, "is the --input file", only=True)
    assert texts.read_text(encoding="utf-8") == "Jean habite à Paris.\n"     # not truncated


def test_output_in_a_missing_folder_creates_it(runner, tiny_bio, texts):
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "new/dir/out.jsonl")
    assert res.exit_code == 0, res.output
    assert (texts.parent / "new/dir/out.jsonl").read_bytes().count(b"\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder")
def test_output_in_a_read_only_folder_real(runner, tiny_bio, texts):
    locked = texts.parent / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "locked/out.jsonl")
        one_error(res, "--output locked/out.jsonl", "permission denied", only=True)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(("read_only", "reason"), [(True, "read-only file system"), (False, "permission denied")])
def test_output_in_an_unwritable_folder_simulated(runner, tiny_bio, texts, monkeypatch, read_only, reason):
    """Simulated (the tests run as root, for whom chmod blocks nothing): os.access says no, and
    statvfs says whether the file system is mounted read-only."""
    real_access, real_statvfs = os.access, os.statvfs
    target = texts.parent / "ro"
    target.mkdir()

    def access(path, mode, **kw):
        return False if Path(path) == Path("ro") and mode == os.W_OK else real_access(path, mode, **kw)

    class Flags:
        f_flag = os.ST_RDONLY if read_only else 0

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "statvfs", lambda path: Flags() if Path(path) == Path("ro") else real_statvfs(path))
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "ro/out.jsonl")
    one_error(res, f"--output ro/out.jsonl: cannot write in ro ({reason})", only=True)


@pytest.mark.parametrize(("err", "reason"), [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "no such file or folder"),
])
def test_output_open_failure_after_loading_is_one_line(runner, tiny_bio, texts, monkeypatch, err, reason):
    """Simulated: opening the output fails after the checks passed (a race, or a quota)."""
    real_open = Path.open

    def fake_open(self, mode="r", *args, **kw):
        if self.name == "out.jsonl":
            err.filename = str(self)
            raise err
        return real_open(self, mode, *args, **kw)

    monkeypatch.setattr(Path, "open", fake_open)
    res = infer(runner, "--model", str(tiny_bio), "--input", "texts.txt", "--output", "out.jsonl")
    one_error(res, f"--output out.jsonl: cannot open ({reason})")


@pytest.mark.parametrize(("err", "message"), [
    (PermissionError(errno.EACCES, "Permission denied", "run/out.jsonl"), "run/out.jsonl: permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "nope/x"), "nope/x: no such file or folder"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "data"), "data: is a folder, not a file"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a.txt/b"), "a.txt/b: a part of the path is not a folder"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/x"), "/mnt/x: read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
])
def test_os_errors_anywhere_are_one_line(runner, err, message):
    """The central mapping (nerkd/cli/errors.py): any command that meets these says one line."""
    cli = typer.Typer()

    @cli.command()
    @known_errors
    def boom() -> None:
        raise err

    res = runner.invoke(cli, [])
    assert one_error(res) == f"error: {message}"


def test_nameless_unexpected_os_error_keeps_its_traceback():
    assert _known_external(OSError(errno.EINVAL, "Invalid argument")) is None       # a bug: not hidden


# -- item 6: corrupt model files ------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_weights_name_the_file(runner, tiny_bio, in_tmp, texts):
    model = _copy(tiny_bio, in_tmp / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    res = infer(runner, "--model", "m", "--input", "texts.txt")
    one_error(res, "m/model.safetensors: corrupt or truncated safetensors file (", only=True)


def test_half_written_crf_names_the_file(runner, tiny_crf, in_tmp, texts):
    model = _copy(tiny_crf, in_tmp / "m")
    crf = model / "crf.safetensors"
    crf.write_bytes(crf.read_bytes()[: crf.stat().st_size // 2])
    res = infer(runner, "--model", "m", "--input", "texts.txt")
    one_error(res, "m/crf.safetensors: corrupt or truncated safetensors file (", only=True)


def test_invalid_config_json_names_the_file_and_line(runner, tiny_bio, in_tmp, texts):
    model = _copy(tiny_bio, in_tmp / "m")
    (model / "config.json").write_text('{\n  "model_type": "camembert",\n  not json\n', encoding="utf-8")
    res = infer(runner, "--model", "m", "--input", "texts.txt")
    one_error(res, "m/config.json: invalid JSON at line 3 column 3", only=True)


@pytest.fixture(scope="module")
def finished_run(tiny_bio, tmp_path_factory) -> Path:
    """A two-step fine-tune of the tiny model, with its checkpoints/last."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("run")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        res = finetune(CliRunner(), "--model", str(tiny_bio), "--output", "run", "--epochs", "1",
                       "--set", "train.max_steps=2")
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert (root / "run/checkpoints/last/train_state.pt").is_file()
    return root / "run"


@pytest.mark.parametrize(("name", "keep", "expected"), [
    ("model.safetensors", 100, "corrupt or truncated safetensors file"),
    ("train_state.pt", 100, "corrupt or truncated"),
    ("train_state.pt", 0, "corrupt or truncated"),                 # EOFError, not caught before
])
def test_corrupt_checkpoint_on_resume_names_the_file(runner, tiny_bio, finished_run, in_tmp, name, keep, expected):
    shutil.copytree(finished_run, in_tmp / "run")
    path = in_tmp / "run/checkpoints/last" / name
    path.write_bytes(path.read_bytes()[:keep])
    res = finetune(runner, "--model", str(tiny_bio), "--output", "run", "--epochs", "1",
                   "--set", "train.max_steps=2", "--resume")
    one_error(res, f"run/checkpoints/last/{name}: cannot resume from this checkpoint: {expected}")


# -- item 7: a missing local path is not a hub problem ---------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to reach the hub or resolve a host name."""
    import socket

    from nerkd.models import hub

    def forbidden(*args, **kwargs):
        raise AssertionError("network access for a local path")

    monkeypatch.setattr(hub, "hub_reachable", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)


def test_infer_missing_local_model_no_network(runner, in_tmp, texts, no_network):
    (in_tmp / "artifacts").mkdir()
    res = infer(runner, "--model", "artifacts/nope", "--input", "texts.txt")
    line = one_error(res, "artifacts/nope (--model): no such folder", only=True)
    assert "hub" not in line


@pytest.mark.parametrize("ref", ["artifacts/nope", "runs/nope", "./nope", "/nonexistent/nope", "~/nope", "a/b/c"])
def test_check_ref_local_looking_paths(in_tmp, no_network, ref):
    from nerkd.errors import ModelLoadError
    from nerkd.models.hub import check_ref

    (in_tmp / "runs").mkdir()       # an existing first folder makes runs/nope local; artifacts/ always is
    with pytest.raises(ModelLoadError, match=r"\(teacher\.model\): no such folder$"):
        check_ref(ref, "teacher", "teacher.model")


def test_validate_missing_teacher_folder_names_the_setting(runner, in_tmp, no_network):
    (in_tmp / "artifacts").mkdir()
    res = runner.invoke(app, ["validate", "--set", "teacher.model=artifacts/nope"])
    assert res.exit_code == 1
    assert "error: teacher artifacts/nope (teacher.model): no such folder" in res.stderr.splitlines()


def test_distill_missing_teacher_folder_no_network(runner, in_tmp, no_network):
    (in_tmp / "artifacts").mkdir()
    config = write_config(in_tmp, "artifacts/nope")
    res = runner.invoke(app, ["distill", "--config", config, "--output", "run"])
    one_error(res, "teacher artifacts/nope (teacher.model): no such folder")


def test_hub_id_offline_still_says_hub_with_the_commands_option(runner, in_tmp, texts, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = infer(runner, "--model", "someorg/somemodel", "--input", "texts.txt")
    line = one_error(res, "cannot reach the Hugging Face hub", "e.g. --model path/to/somemodel", only=True)
    assert "teacher.model" not in line
    res = runner.invoke(app, ["validate", "--set", "teacher.model=someorg/somemodel"])
    assert res.exit_code == 1
    assert any("cannot reach the Hugging Face hub" in line and "e.g. --set teacher.model=path/to/somemodel" in line
               for line in res.stderr.splitlines())
    config = write_config(in_tmp, "someorg/somemodel")
    res = runner.invoke(app, ["distill", "--config", config, "--output", "run"])
    one_error(res, "cannot reach the Hugging Face hub", "e.g. --set teacher.model=path/to/somemodel")


def test_finetune_options_are_named(runner, in_tmp, no_network):
    (in_tmp / "artifacts").mkdir()
    res = finetune(runner, "--base", "artifacts/nope")
    one_error(res, "base model artifacts/nope (--base): no such folder")
    res = finetune(runner, "--model", "artifacts/nope")
    one_error(res, "model artifacts/nope (--model): no such folder")
