from __future__ import annotations

from pathlib import Path

import pytest

from nerkd.errors import SettingsError
from nerkd.project import Project
from nerkd.settings import load_settings, parse_overrides
from tests.helpers import DATA


def test_defaults_and_phase_schedule():
    s = load_settings()
    assert s.teacher.model == "Jean-Baptiste/camembert-ner"
    assert s.distill.weights_for_epoch(1).model_dump() == {"ce": 1.0, "kd": 0.5, "hidden": 0.1, "crf": 0.1}
    assert s.distill.weights_for_epoch(2).model_dump() == {"ce": 1.0, "kd": 1.0, "hidden": 0.2, "crf": 0.2}
    assert s.distill.weights_for_epoch(7).kd == 1.0


def test_precedence_yaml_env_set(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 0.001\n  batch_size: 4\n  epochs: 3\n")
    monkeypatch.setenv("NERKD_TRAIN__BATCH_SIZE", "8")
    monkeypatch.setenv("NERKD_TRAIN__EPOCHS", "5")
    s = load_settings(cfg, ["train.epochs=7"])
    assert s.train.lr == 0.001          # YAML over default
    assert s.train.batch_size == 8      # env over YAML
    assert s.train.epochs == 7          # --set over env


def test_typo_in_yaml_names_key_and_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(SettingsError) as e:
        load_settings(cfg)
    assert str(e.value) == f"{cfg}: setting train.lrr: unknown key; did you mean train.lr?"


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["train.lr=abc"], "--set: setting train.lr: Input should be a valid number"),
        (["prune.rate=1.5"], "--set: setting prune.rate: Input should be less than 1"),
        (["nope.x=1"], "--set: setting nope: unknown key"),
        (["train"], "--set 'train': expected section.key=value"),
    ],
)
def test_bad_overrides(pairs, expected):
    with pytest.raises(SettingsError) as e:
        load_settings(None, pairs)
    assert str(e.value).startswith(expected)


def test_env_error_names_variable(monkeypatch):
    monkeypatch.setenv("NERKD_TRAIN__LR", "5")
    with pytest.raises(SettingsError, match=r"environment \(NERKD_TRAIN__LR\): setting train.lr"):
        load_settings()


def test_missing_config_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "missing.yaml")


def test_invalid_yaml_names_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: [1,\n")
    with pytest.raises(SettingsError, match=rf"{cfg}:\d+: invalid YAML"):
        load_settings(cfg)


def test_cross_field_checks():
    with pytest.raises(SettingsError, match="distill.layer_map"):
        load_settings(None, ["distill.layer_map.teacher=[1,2]", "distill.layer_map.student=[1]"])
    with pytest.raises(SettingsError, match="data"):
        load_settings(None, ["data.max_length=16", "data.stride=15"])
    s = load_settings(None, ["distill.phases=[{from_epoch: 1, weights: [1, 0, 0, 0]}]"])
    assert s.distill.weights_for_epoch(3).kd == 0


def test_parse_overrides_nested():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e=[1, 2]"]) == {"a": {"b": {"c": 1}, "d": "x"}, "e": [1, 2]}


def test_saved_settings_reload_identically(tmp_path):
    s = load_settings(None, ["train.lr=0.0003", "prune.rate=0.5"])
    path = s.save(tmp_path / "run")
    assert load_settings(path) == s


def test_project_remembers_config_and_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NERKD_CONFIG", raising=False)
    cfg = tmp_path / "configs" / "x.yaml"
    cfg.parent.mkdir()
    cfg.write_text("prune:\n  rate: 0.5\n")
    p = Project.discover()
    assert p.config_path(None) is None
    p.remember_config(cfg)
    out = tmp_path / "artifacts" / "student_10L"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")              # a model: only folders holding one are offered
    (out / "model.safetensors").write_bytes(b"")
    p.remember_output("distill", out)
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    q = Project.discover(sub)           # found by walking up, like pyproject.toml
    assert q.root == tmp_path.resolve()
    assert q.config_path(None) == tmp_path.resolve() / "configs" / "x.yaml"
    assert q.default_input("prune", "artifacts") == tmp_path.resolve() / "artifacts" / "student_10L"
    assert q.default_output("prune", "artifacts") == tmp_path.resolve() / "artifacts" / "pruned"
    assert Path(q.config_path("other.yaml")) == Path("other.yaml")   # explicit wins


def test_labels_drop_and_map_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("labels:\n  drop: [MISC]\n  map: {PERSON: PER, DATE: O}\n")
    s = load_settings(cfg)
    assert s.labels.drop == ["MISC"] and s.labels.map == {"PERSON": "PER", "DATE": "O"}
    assert load_settings(None, ["labels.drop=MISC"]).labels.drop == ["MISC"]   # one type, as --set gives it


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["labels.dropp=[MISC]"], "--set: setting labels.dropp: unknown key"),
        (["labels.drop=[B-MISC]"], "--set: setting labels.drop: Value error, 'B-MISC' is a tag: give its type (MISC)"),
        (["labels.map={MISC: B-PER}"], "--set: setting labels.map: Value error, 'B-PER' is a tag: give its type (PER)"),
        (["labels.map={MISC: 'a b'}"], "--set: setting labels.map: Value error, 'a b' is not an entity type or \"O\""),
        (["labels.map={O: PER}"], "--set: setting labels.map: Value error, 'O' is not an entity type"),
        (["labels.drop=[MISC]", "labels.map={MISC: O}"], "--set: setting labels: Value error, MISC in both"),
    ],
)
def test_labels_drop_and_map_typos(pairs, expected):
    with pytest.raises(SettingsError) as e:
        load_settings(None, pairs)
    assert str(e.value).startswith(expected)


# -- settings.yaml: written once per run folder --------------------------------------------------

RUN_SETS = [f"data.train={DATA / 'train.jsonl'}", f"data.dev={DATA / 'dev.jsonl'}",
            f"data.label2id={DATA / 'label2id.json'}", "data.limit=8", "data.max_length=48", "data.stride=8",
            "train.batch_size=8", "train.max_steps=2", "train.device=cpu", "prune.max_sentences=8"]


@pytest.mark.parametrize("stage", ["distill", "prune", "finetune", "teacher"])
def test_each_stage_writes_settings_yaml_once(stage, tiny_io_teacher, tiny_bio, in_tmp, runner, monkeypatch):
    from nerkd.cli.app import app
    from nerkd.settings import Settings

    writes: list[Path] = []
    save = Settings.save

    def counted(self, folder, name="settings.yaml"):
        writes.append(Path(folder).resolve() / name)
        return save(self, folder, name)

    monkeypatch.setattr(Settings, "save", counted)
    args = {"distill": ["distill", "--teacher", str(tiny_io_teacher), "--set", "student.num_layers=2",
                        "--set", "distill.layer_map.teacher=[2,4]", "--set", "distill.layer_map.student=[1,2]"],
            "prune": ["prune", "--model", str(tiny_bio)],
            "finetune": ["finetune", "--model", str(tiny_bio)],
            "teacher": ["finetune", "--base", "scratch", "--scratch-layers", "1", "--scratch-hidden", "32"]}[stage]
    res = runner.invoke(app, [*args, "--output", "run", *(x for s in RUN_SETS for x in ("--set", s))])
    assert res.exit_code == 0, res.output
    assert writes == [in_tmp.resolve() / "run" / "settings.yaml"]
    assert load_settings(in_tmp / "run" / "settings.yaml").train.max_steps == 2


def test_every_committed_config_loads():
    """configs/*.yaml are the documented recipes: each must parse under the settings model (no typo, no stale key)."""
    from tests.helpers import REPO

    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"quickstart.yaml", "kd_camembert.yaml", "domain.yaml"}
    for path in configs:
        settings = load_settings(path, [])
        assert settings.teacher.model, path
    domain = load_settings(REPO / "configs" / "domain.yaml", [])
    assert domain.data.unlabeled and domain.distill.unlabeled_ratio > 0 and domain.teacher.model == "artifacts/teacher"
