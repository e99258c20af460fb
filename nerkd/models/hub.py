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
    backslash or more than one ``/``, or its first folder exists here or is the artifacts folder."""
    if ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1:
        return True
    first, sep, _ = ref.partition("/")
    return bool(sep) and (first in LOCAL_ROOTS or Path(first).exists())


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


def check_ref(ref: str, what: str = "model", option: str | None = None) -> str:
    """Return ``"local"`` or ``"hub"``; raise a one-line ModelLoadError when it cannot load.

    ``option`` is how the user gave ``ref`` in the command that runs (``"--model"``, or a setting
    such as ``"teacher.model"``); the message names it. A reference that can only be a local path
    (see :func:`looks_local`) is reported missing at once, without asking the network.
    """
    ref = str(ref)
    given = f" ({option})" if option else ""
    path = Path(ref)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{what} {ref}{given}: is a file, not a model folder")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{what} {ref}{given}: folder has no config.json (is it a saved model?)")
        return "local"
    if looks_local(ref) or not _HUB_ID.match(ref):
        raise ModelLoadError(f"{what} {ref}{given}: no such folder")
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
