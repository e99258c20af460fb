"""Issue #22 items 6-12 (errors and faults): each known fault is one line, exit 1, naming the file,
setting or option at fault; the server drains before it stops and keeps request details out of its log.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from nerkd.cli.app import app


def one_error(res, *needles: str) -> str:
    """The single ``error:`` line of a failed command: exit 1, no traceback, the last line of stderr."""
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def copy_model(src: Path, dst: Path, **config) -> Path:
    """A copy of the model folder ``src`` with ``config`` set in its config.json."""
    shutil.copytree(src, dst)
    raw = orjson.loads((dst / "config.json").read_bytes())
    raw.update(config)
    (dst / "config.json").write_bytes(orjson.dumps(raw))
    return dst


# -- item 6: a config.json field of the wrong type ------------------------------------------------
def test_wrong_typed_config_field_is_one_line_naming_file_and_field(runner, tiny_bio, in_tmp):
    bad = copy_model(tiny_bio, in_tmp / "bad", num_hidden_layers="x")
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--device", "cpu", "--model", str(bad), "--input", "t.txt"])
    one_error(res, str(bad / "config.json"), "num_hidden_layers", "expected int")
    assert len(res.stderr.splitlines()) <= 3, res.stderr        # was an 84-line traceback


def test_wrong_typed_config_field_through_the_library(tiny_bio, tmp_path):
    from nerkd.errors import ModelLoadError
    from nerkd.models.ner import NerModel

    bad = copy_model(tiny_bio, tmp_path / "bad", hidden_size=[64])
    try:
        NerModel.load(bad)
    except ModelLoadError as e:
        assert str(e).startswith(f"{bad / 'config.json'}: field hidden_size:"), e
    else:
        raise AssertionError("loaded a config with a wrong-typed field")


# -- item 8: a misspelled local path is not looked up on the hub ----------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """HF_HUB_OFFLINE, and a failed test on any question to the hub (cache or network)."""
    from nerkd.models import hub

    def forbidden(*args, **kwargs):
        raise AssertionError("the hub was asked about a local path")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", forbidden)
    monkeypatch.setattr(hub, "_in_cache", forbidden)


def test_misspelled_first_folder_says_no_such_folder_and_the_nearest(runner, tiny_bio, in_tmp, no_hub):
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "teacher")
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", "artifcts/teacher", "--input", "t.txt"])
    one_error(res, "model artifcts/teacher (--model): no such folder; did you mean artifacts/teacher?")
    res = runner.invoke(app, ["prune", "--model", "artifacts/teachr"])
    one_error(res, "no such folder; did you mean artifacts/teacher?")
    res = runner.invoke(app, ["infer", "--model", "artifacts/nope", "--input", "t.txt"])
    one_error(res, "artifacts/nope (--model): no such folder; artifacts holds teacher")


def test_a_folder_of_the_project_root_is_local_from_a_subfolder(in_tmp, no_hub, monkeypatch):
    from nerkd.errors import ModelLoadError
    from nerkd.models.hub import check_ref

    (in_tmp / "nerkd.yaml").write_text("", encoding="utf-8")
    (in_tmp / "runs" / "best").mkdir(parents=True)
    (in_tmp / "notebooks").mkdir()
    monkeypatch.chdir(in_tmp / "notebooks")
    with pytest.raises(ModelLoadError, match=r"runs/nope \(--model\): no such folder"):
        check_ref("runs/nope", "model", "--model")       # runs/ is the project's, not a hub organisation
    with pytest.raises(ModelLoadError, match=r"no such folder; did you mean .*runs/best\?"):
        check_ref("rnus/best", "model", "--model")


def test_a_hub_id_still_goes_to_the_hub(in_tmp, monkeypatch):
    from nerkd.errors import ModelLoadError
    from nerkd.models import hub

    asked = []
    monkeypatch.setattr(hub, "_in_cache", lambda ref: asked.append(ref) or False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    (in_tmp / "artifacts").mkdir()
    with pytest.raises(ModelLoadError, match="cannot reach the Hugging Face hub"):
        hub.check_ref("Jean-Baptiste/camembert-ner", "teacher", "teacher.model")
    assert asked == ["Jean-Baptiste/camembert-ner"]


# -- item 11: a missing model folder is said before torch is imported -----------------------------
_PROBE = """
import sys
import orjson
from typer.testing import CliRunner
from nerkd.cli.app import app
out = []
for args in orjson.loads(sys.argv[1]):
    res = CliRunner().invoke(app, args)
    out.append([res.exit_code, res.stderr.strip().splitlines()[-1:], "torch" in sys.modules,
                "transformers" in sys.modules])
print(orjson.dumps(out).decode())
"""

MISSING = [
    ["infer", "--model", "artifacts/nope", "--input", "t.txt"],
    ["prune", "--model", "artifacts/nope"],
    ["finetune", "--model", "artifacts/nope"],
    ["finetune", "--base", "artifacts/nope"],
    ["distill", "--teacher", "artifacts/nope"],
    ["distill", "--set", "teacher.model=artifacts/nope"],
    ["export", "--model", "artifacts/nope"],
    ["serve", "--model", "artifacts/nope"],
    ["bench", "--model", "artifacts/nope"],
    ["report", "--model", "mine=artifacts/nope"],
    ["prune", "--set", "train.lrr=1"],
    ["report", "--set", "train.lrr=1"],
    ["bench", "--set", "train.lrr=1"],
]


def test_missing_model_and_bad_settings_fail_before_torch_is_imported(in_tmp):
    (in_tmp / "artifacts").mkdir()
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _PROBE, orjson.dumps(MISSING).decode()], capture_output=True,
                          text=True, timeout=300, cwd=in_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for args, (code, last, torch, transformers) in zip(MISSING, orjson.loads(proc.stdout), strict=True):
        assert code == 1 and last and last[0].startswith("error:"), (args, code, last)
        assert "no such folder" in last[0] or "train.lrr" in last[0], (args, last)
        assert not torch and not transformers, f"{' '.join(args)}: torch imported before saying {last[0]}"
