"""nox sessions: tests, lint, and the offline quickstart chain (the README's two commands).

torch is installed pinned first (torch==2.13.0): an unpinned torch pulls a multi-GB CUDA build.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "spark", "lint"]
nox.options.reuse_existing_virtualenvs = True
TORCH = "torch==2.13.0"


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite but the Spark tests (offline, CPU, < 5 minutes on 2 cores)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not spark", *session.posargs)


@nox.session
def spark(session: nox.Session) -> None:
    """The Spark tests (a local[2] session on Java 17+; JVM and worker start-up make them slow: ~1.5 minutes)."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "spark", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, then the import contracts of pyproject.toml's [tool.importlinter] (the layers of nerkd).

    Neither needs torch or the package installed: lint-imports reads the sources (grimp finds nerkd on the
    session's working directory, the repository root), so this session stays a small download.
    """
    session.install("ruff>=0.5", "import-linter>=2.0")
    session.run("ruff", "check", "nerkd", "tests", "benchmarks", "noxfile.py")
    session.run("lint-imports", "--no-cache", "--no-logo")


@nox.session
def quickstart(session: nox.Session) -> None:
    """The whole chain on the embedded sample data, offline on CPU; ends with the report's path."""
    _install(session, "plots,redact")
    env = {"HF_HUB_OFFLINE": "1"}
    cfg = ["--config", "configs/quickstart.yaml"]
    teacher = ["--base", "scratch", "--epochs", "10", "--lr", "2e-3", "--output", "artifacts/teacher"]
    session.run("nerkd", "finetune", *teacher, *cfg, env=env)
    session.run("nerkd", "validate", *cfg, env=env)
    session.run("nerkd", "distill", *cfg, env=env)
    session.run("nerkd", "prune", "--rate", "0.25", env=env)
    session.run("nerkd", "finetune", env=env)
    session.run("nerkd", "infer", "--input", "data/texts.txt", "--output", "artifacts/entities.jsonl", env=env)
    session.run("nerkd", "redact", "--input", "data/texts.txt", "--output", "artifacts/redacted.jsonl", env=env)
    session.run("nerkd", "bench", env=env)
    session.run("nerkd", "report", env=env)


@nox.session
def readme(session: nox.Session) -> None:
    """Rerun the quickstart chain in a temporary project; rewrite the README's table and docs/*.png from it."""
    _install(session, "plots,redact")
    session.run("python", "benchmarks/readme_quickstart.py", *session.posargs)
