"""Project discovery and the artifact layout.

Like tools that find ``pyproject.toml``, nerkd walks up from the current folder to the first
folder holding a ``.nerkd/`` folder or a ``nerkd.yaml`` file: that is the project root (if none
is found, the current folder is). ``.nerkd/state.json`` remembers the config last given with
``--config`` and the output folder of each stage, so ``nerkd distill --config X`` followed by
``nerkd prune --rate 0.25`` works with no other flag.

Which config is used, first match wins: ``--config``, ``$NERKD_CONFIG``, the config remembered in
``.nerkd/state.json``, ``<root>/nerkd.yaml``, the defaults alone.

Default layout under ``<root>/<paths.artifacts>`` (``artifacts`` by default)::

    teacher/   finetune --base ...   (a domain teacher)
    student/   distill
    pruned/    prune
    final/     finetune (recovery)
    bench.json bench
    report/    report
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.io import write_json
from nerkd.rundir import has_model

STAGE_DIRS = {"teacher": "teacher", "distill": "student", "prune": "pruned", "finetune": "final"}
# Each stage's default input: the newest output among these stages.
STAGE_INPUTS = {
    "distill": (),
    "prune": ("distill",),
    "finetune": ("prune", "distill"),
    "infer": ("finetune", "prune", "distill"),
}


def find_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".nerkd").is_dir() or (folder / "nerkd.yaml").is_file():
            return folder
    return here


@dataclass
class Project:
    root: Path
    state: dict = field(default_factory=dict)

    @classmethod
    def discover(cls, start: Path | None = None) -> Project:
        root = find_root(start)
        state_file = root / ".nerkd" / "state.json"
        state = {}
        if state_file.is_file():
            try:
                state = orjson.loads(state_file.read_bytes())
            except orjson.JSONDecodeError:
                state = {}
        return cls(root=root, state=state if isinstance(state, dict) else {})

    @property
    def state_file(self) -> Path:
        return self.root / ".nerkd" / "state.json"

    def config_path(self, explicit: str | Path | None) -> Path | None:
        """The config file to use (see module doc for the order)."""
        if explicit is not None:
            return Path(explicit)
        if os.environ.get("NERKD_CONFIG"):
            return Path(os.environ["NERKD_CONFIG"])
        remembered = self.state.get("config")
        if remembered:
            path = Path(remembered)
            return path if path.is_absolute() else self.root / path
        default = self.root / "nerkd.yaml"
        return default if default.is_file() else None

    def remember_config(self, path: Path) -> None:
        self.state["config"] = _rel(path, self.root)
        self._save()

    def artifacts(self, artifacts_setting: str) -> Path:
        path = Path(artifacts_setting)
        return path if path.is_absolute() else self.root / path

    def default_output(self, stage: str, artifacts_setting: str) -> Path:
        return self.artifacts(artifacts_setting) / STAGE_DIRS[stage]

    def default_input(self, stage: str, artifacts_setting: str) -> Path | None:
        """Newest output of the stages feeding ``stage`` that holds a model (config.json and
        weights): the remembered folder of a stage, else (none remembered, or gone) its default folder.

        A run folder without a model (a killed run, a fresh run that never saved) is never offered,
        and an older default folder is not offered in place of a remembered one that lost its model.
        """
        outputs = self.state.get("outputs", {})
        for prev in STAGE_INPUTS.get(stage, ()):
            folder = self.root / outputs[prev] if prev in outputs else None
            if folder is None or not folder.exists():   # none remembered, or the folder was deleted since
                folder = self.default_output(prev, artifacts_setting)
            if has_model(folder):
                return folder
        return None

    def remember_output(self, stage: str, path: Path) -> None:
        self.state.setdefault("outputs", {})[stage] = _rel(path, self.root)
        self._save()

    def _save(self) -> None:
        write_json(self.state_file, self.state)


def _rel(path: Path, root: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
