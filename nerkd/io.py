"""Small I/O helpers: atomic writes and orjson lines."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give (mkstemp/mkdtemp use 0600/0700)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # nerkd's own suffix: the leftover of a killed write is recognised as such (nerkd.rundir.clean_leftovers)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nerkd-tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, default_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(
        path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    )


def read_json(path: str | Path) -> Any:
    return orjson.loads(Path(path).read_bytes())


def dumps_line(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """sha256 of a file, read in blocks (what ``sha256sum`` prints)."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def combined_sha256(files: dict[str, str]) -> str | None:
    """One hash for a model's weight files ``{name: sha256}``: the sha256 of the single file, or, with several,
    the sha256 of their ``sha256sum``-style listing (``<hash>  <name>\\n`` per file, sorted by name); None for none."""
    import hashlib

    if not files:
        return None
    if len(files) == 1:
        return next(iter(files.values()))
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()
