"""Resolve a model reference (local folder or hub id) and fail fast, in one line, offline."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from nerkd.errors import ModelLoadError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_local(ref: str | Path) -> bool:
    return Path(ref).exists()


# A reference whose first folder is one of these is a local path even when that folder is missing
# (the default settings.paths.artifacts: ``artifacts/final`` is never a hub id).
LOCAL_ROOTS = ("artifacts",)


def looks_local(ref: str) -> bool:
    """True when ``ref`` can only be a local path: it starts with ``.``, ``/`` or ``~``, has a
    backslash or more than one ``/``, or its first folder exists here or under the project root, is
    the artifacts folder, or is a near miss of a folder that exists (``artifcts/teacher``: a typo,
    not a hub organisation)."""
    if ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1:
        return True
    first, sep, _ = ref.partition("/")
    if not sep:
        return False
    if first in LOCAL_ROOTS or any((base / first).exists() for base in _bases()):
        return True
    return any(_close(first, _folders(base), _TYPO_CUTOFF) for base in _bases())


# how close (difflib's ratio) a first folder must be to an existing one to be taken for its typo
_TYPO_CUTOFF = 0.75


def _bases() -> list[Path]:
    """Where a relative model path is looked for: the current folder, then the project root."""
    from nerkd.project import find_root

    here = Path.cwd()
    root = find_root(here)
    return [Path("."), root] if root != here.resolve() else [Path(".")]


def _folders(base: Path) -> list[str]:
    try:
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _close(name: str, names: list[str], cutoff: float) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
    return found[0] if found else None


def nearest_folder(ref: str) -> str:
    """For a missing local ``ref``: ``"; did you mean X?"`` when replacing each missing part by the nearest
    existing folder name (difflib) gives a folder, else ``"; F holds a, b"`` naming the folders of the
    deepest existing folder on the way; empty when there is nothing to suggest."""
    path = Path(ref).expanduser()
    for base in ([Path(path.anchor)] if path.is_absolute() else _bases()):
        parts = path.parts[1:] if path.is_absolute() else path.parts
        here, changed, missing = base, False, False
        for part in parts:
            if (here / part).is_dir():
                here = here / part
                continue
            match = _close(part, _folders(here), 0.6)
            if match is None:
                missing = True
                break
            here, changed = here / match, True
        if not missing and changed and here.is_dir():
            return f"; did you mean {here}?"
        if here != base and _folders(here):
            names = _folders(here)
            more = f" and {len(names) - 6} more" if len(names) > 6 else ""
            return f"; {here} holds {', '.join(names[:6])}{more}"
    return ""


def option_hint(option: str | None, value: str) -> str:
    """How to give ``value`` with ``option``: ``--model X`` for a command option, ``--set key=X`` for a
    setting (an option without leading dashes is a setting name)."""
    if not option:
        return value
    return f"{option} {value}" if option.startswith("-") else f"--set {option}={value}"


_reachable: dict[tuple[str, int], bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can the hub be reached? Asked once per process (each model, tokenizer and config load asks)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    key = (url.hostname or "", url.port or 443)
    if key not in _reachable:
        try:
            with socket.create_connection(key, timeout=timeout):
                _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def check_local(ref: str | Path, what: str = "model", option: str | None = None) -> bool:
    """Without the network or any import: True when ``ref`` is a local folder, False when it may be a
    hub id; a one-line ModelLoadError when it is a file, or can only be a local path (see
    :func:`looks_local`) and is missing (naming the nearest existing folder)."""
    ref = str(ref)
    given = f" ({option})" if option else ""
    path = Path(ref)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{what} {ref}{given}: is a file, not a model folder")
        return True
    if looks_local(ref) or not _HUB_ID.match(ref):
        raise ModelLoadError(f"{what} {ref}{given}: no such folder{nearest_folder(ref)}")
    return False


def check_ref(ref: str, what: str = "model", option: str | None = None) -> str:
    """Return ``"local"`` or ``"hub"``; raise a one-line ModelLoadError when it cannot load.

    ``option`` is how the user gave ``ref`` in the command that runs (``"--model"``, or a setting
    such as ``"teacher.model"``); the message names it. A reference that can only be a local path
    (see :func:`looks_local`) is reported missing at once, without asking the network.
    """
    ref = str(ref)
    given = f" ({option})" if option else ""
    if check_local(ref, what, option):
        if not (Path(ref) / "config.json").is_file():
            raise ModelLoadError(f"{what} {ref}{given}: folder has no config.json (is it a saved model?)")
        return "local"
    if _in_cache(ref):
        return "hub"
    if not hub_reachable():
        example = option_hint(option, f"path/to/{ref.split('/')[-1]}")
        raise ModelLoadError(
            f"{what} {ref}{given}: not a local folder; as a hub id it is not in the local cache and nerkd cannot "
            f"reach the Hugging Face hub (offline?): download it elsewhere and give its local folder"
            + (f", e.g. {example}" if option else ""))
    return "hub"


def _in_cache(ref: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, "config.json")
        return isinstance(found, str)
    except Exception:  # noqa: BLE001 - any cache problem means "not cached"
        return False


def short_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
