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


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_ref(ref: str, what: str = "model") -> str:
    """Return ``"local"`` or ``"hub"``; raise a one-line ModelLoadError when it cannot load."""
    ref = str(ref)
    if is_local(ref):
        if not (Path(ref) / "config.json").is_file():
            raise ModelLoadError(f"{what} {ref}: folder has no config.json (is it a saved model?)")
        return "local"
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
    if looks_like_path or not _HUB_ID.match(ref):
        raise ModelLoadError(f"{what} {ref}: no such folder")
    if _in_cache(ref):
        return "hub"
    if not hub_reachable():
        raise ModelLoadError(
            f"{what} {ref}: cannot reach the Hugging Face hub (offline?) and it is not in the local cache; "
            f"download it elsewhere and give its local folder, e.g. --set teacher.model=path/to/{ref.split('/')[-1]}"
        )
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
