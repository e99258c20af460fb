"""Options and settings resolution shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported when a command runs, not to print help (pydantic takes a while)
    from nerkd.project import Project
    from nerkd.settings import Settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: the project's, see README).",
                 dir_okay=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a setting: section.key=value (repeatable).",
                 metavar="KEY=VALUE"),
]


def resolve(config: Path | None, sets: list[str] | None) -> tuple[Settings, Project]:
    """Load settings (defaults < YAML < env < --set) and the project; remember an explicit config."""
    from nerkd.project import Project
    from nerkd.settings import load_settings

    project = Project.discover()
    path = project.config_path(config)
    settings = load_settings(path, sets)
    if config is not None:
        project.remember_config(Path(config))
    return settings, project
