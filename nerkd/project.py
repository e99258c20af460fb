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

The pipeline (:data:`STAGE_DIRS`, :data:`PIPELINE`) is spelled here once: each stage's default output
folder, each stage's default input (:data:`STAGE_INPUTS`), and which models ``nerkd bench`` and
``nerkd report`` take by default and under which names (:func:`default_models`: ``teacher``,
``student``, ``pruned``, ``final``). :func:`parse_models` names the models given with ``--model``,
for both commands alike, so that the report finds each model's entry in ``bench.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orjson

from nerkd.io import write_json
from nerkd.rundir import has_model

if TYPE_CHECKING:
    from nerkd.settings import Settings

# The pipeline, in order: stage -> its default output folder under <paths.artifacts>. The teacher
# (finetune --base) makes the model the student learns from; the student stages follow it.
STAGE_DIRS = {"teacher": "teacher", "distill": "student", "prune": "pruned", "finetune": "final"}
PIPELINE = tuple(STAGE_DIRS)          # teacher -> distill -> prune -> finetune
STUDENT_STAGES = PIPELINE[1:]         # distill -> prune -> finetune
# Each stage's default input: the newest output among the student stages before it (distill reads the
# teacher named in the settings; infer, export and serve take the newest of them all).
STAGE_INPUTS = {
    **{stage: tuple(reversed(STUDENT_STAGES[:i])) for i, stage in enumerate(STUDENT_STAGES)},
    "infer": tuple(reversed(STUDENT_STAGES)),
}


class ModelRef(NamedTuple):
    """A model given with ``--model``: its name in tables and files, and its folder (or hub id)."""

    name: str
    path: str


def parse_models(refs: Sequence[str]) -> list[ModelRef]:
    """``--model`` values (``PATH`` or ``NAME=PATH``) -> unique names, in order (``nerkd bench`` and
    ``nerkd report`` alike).

    A name is the folder's name unless given as ``NAME=PATH`` (a path that exists is a path even
    with ``=`` in it). A name already taken gets its parent folder first (``b/final``), then a
    number (``final#2``).
    """
    out, used = [], set()
    for ref in refs:
        name, sep, path = str(ref).partition("=")
        if not sep or Path(ref).exists():
            name, path = Path(str(ref).rstrip("/")).name or str(ref), str(ref)
        base, k = name, 2
        if name in used:
            parent = Path(path.rstrip("/")).parent.name
            name = f"{parent}/{base}" if parent else base
        while name in used:
            name, k = f"{base}#{k}", k + 1
        used.add(name)
        out.append(ModelRef(name, path))
    return out


@dataclass(frozen=True)
class StageModel:
    """The model a pipeline stage made, as ``nerkd bench`` and ``nerkd report`` take it by default."""

    stage: str    # a key of STAGE_DIRS: "teacher", "distill", "prune", "finetune"
    path: str     # a model folder, or the hub id of a teacher
    local: bool   # a model folder on this machine (False: a hub id, loaded from the hub or its cache)

    @property
    def name(self) -> str:
        """The stage's default folder name (``student`` for distill): the name bench and report show."""
        return STAGE_DIRS[self.stage]


def default_models(settings: Settings, project: Project) -> list[StageModel]:
    """The models ``nerkd bench`` and ``nerkd report`` take by default, in pipeline order, named by
    :attr:`StageModel.name` (teacher, student, pruned, final).

    First the teacher of the settings (``teacher.model``: a local folder, or a hub id, kept as given;
    each command skips, with a warning, a model that cannot load), then each student stage's output
    (:meth:`Project.stage_output`) that holds a model. A folder already listed (a stage writing into
    another's folder) is listed once.
    """
    artifacts = settings.paths.artifacts
    found = project.local_model(settings.teacher.model)
    models = [StageModel("teacher", str(found) if found else settings.teacher.model, found is not None)]
    seen = {found.resolve()} if found else set()
    for stage in STUDENT_STAGES:
        folder = project.stage_output(stage, artifacts)
        if has_model(folder) and folder.resolve() not in seen:
            models.append(StageModel(stage, str(folder), True))
            seen.add(folder.resolve())
    return models


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

    def stage_output(self, stage: str, artifacts_setting: str) -> Path:
        """Where ``stage``'s output is: its remembered folder, else (none remembered, or deleted
        since) its default folder. It may hold no model: see :func:`nerkd.rundir.has_model`."""
        remembered = self.state.get("outputs", {}).get(stage)
        folder = self.root / remembered if remembered else None
        return folder if folder is not None and folder.exists() else self.default_output(stage, artifacts_setting)

    def default_input(self, stage: str, artifacts_setting: str) -> Path | None:
        """Newest output of the stages feeding ``stage`` (:data:`STAGE_INPUTS`) that holds a model
        (config.json and weights), found by :meth:`stage_output`.

        A run folder without a model (a killed run, a fresh run that never saved) is never offered,
        and an older default folder is not offered in place of a remembered one that lost its model.
        """
        for prev in STAGE_INPUTS.get(stage, ()):
            folder = self.stage_output(prev, artifacts_setting)
            if has_model(folder):
                return folder
        return None

    def local_model(self, ref: str | Path) -> Path | None:
        """``ref`` as a model folder on this machine (as given, else under the project root), or None."""
        p = Path(ref).expanduser()
        for cand in [p] if p.is_absolute() else [p, self.root / p]:
            if has_model(cand):
                return cand
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
