"""Output folders: what nerkd may write, replace and delete there, and who may write at a time.

Rules, for every command that writes a model or a run (``distill``, ``finetune``, ``prune``):

- nerkd never deletes what it did not write. A folder is *nerkd's* when it holds the marker
  ``.nerkd-run.json`` (written into every folder nerkd writes to), or, for folders written before
  the marker existed, a ``config.json`` with nerkd's metadata or a resumable checkpoint. A
  non-empty folder that is not nerkd's is refused (:class:`RunFolderError`, one line naming what
  it holds) unless ``--overwrite`` is given; then nerkd writes its files beside the others, and
  the marker lists the entries that were there first (``foreign``) so that they are never removed
  nor replaced: a foreign file under a name the command writes is refused (:func:`check_foreign`).
- Only nerkd's own names are ever removed: the model files (:data:`MODEL_NAMES`, plus those the
  marker recorded at the last save), the run files (:data:`RUN_NAMES`), ``checkpoints/last`` and
  the leftovers of killed writes (:func:`clean_leftovers`).
- A model is replaced as a unit (:func:`install_model`): written whole to a temporary folder
  inside the target, then moved in by renames. When the new ``config.json`` differs from the old
  one, the old one is removed first and the new one moved in last, so a folder with a
  ``config.json`` always holds one consistent model.
- A fresh run (no ``--resume``) into a nerkd folder first removes the previous run's model,
  summaries and checkpoints (:meth:`RunFolder.fresh_start`), so nothing of an old run is
  inherited (a later ``--resume`` cannot pick up the old checkpoint).
- No output is one of the command's inputs (:func:`check_not_input`, for every command that writes):
  the same file or folder by real path, or a folder holding an input where nerkd writes.
- One writer at a time: :class:`RunLock` holds ``.nerkd.lock`` (the PID, created with
  ``O_CREAT | O_EXCL``); a lock whose process has ended is taken over.

Files are written with the permissions a plain ``open`` gives under the umask
(:func:`nerkd.io.default_mode`), weights and checkpoints included.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from nerkd.errors import ModelLoadError, NerkdError, SettingsError, TrainingError
from nerkd.io import default_mode, file_sha256, write_json

MARKER = ".nerkd-run.json"
LOCK = ".nerkd.lock"
CHECKPOINTS = "checkpoints"
# what save_pretrained (model and tokenizer) and NerModel.save write at a model folder's root
MODEL_NAMES = frozenset({
    "config.json", "model.safetensors", "model.safetensors.index.json", "crf.safetensors", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja",
})
MODEL_PATTERNS = ("model-*-of-*.safetensors",)
# what the commands write beside the model
RUN_NAMES = frozenset({"settings.yaml", "labels.json", "metrics.jsonl", "train_summary.json", "head_importance.json"})
# nerkd's temporary names (the leftovers of killed writes are exactly these, nothing else is removed):
# folders ``.<kind>.tmp-XXXXXXXX.nerkd-tmp`` holding the file TEMP_MARK (:func:`temp_folder`), the files of
# nerkd.io.atomic_write ``.<name>.XXXXXXXX.nerkd-tmp`` and stale locks set aside ``.nerkd.lock.stale-<pid>``
TEMP_SUFFIX = ".nerkd-tmp"
TEMP_MARK = ".nerkd-temp"
_TEMP_DIR = re.compile(r"\.(save|last)\.tmp-[a-z0-9_]{8}\.nerkd-tmp")
_ATOMIC_TMP = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.nerkd-tmp")
_STALE_LOCK = re.compile(re.escape(LOCK) + r"\.stale-[0-9]+")
WEIGHT_SUFFIXES = (".safetensors", ".onnx")   # files whose sha256 the marker records (:func:`verify_weights`)
STALE_LOCK_AGE_S = 10.0   # a lock file with no readable PID older than this is stale (a killed writer)

Log = Callable[[str], None]


class RunFolderError(NerkdError):
    """An output folder cannot be used: not nerkd's, busy with another run, or a file."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with a one-line message saying whether and how it can be resumed."""


def _quiet(_message: str) -> None:
    pass


# -- what a folder holds ---------------------------------------------------------------------
def read_marker(folder: Path) -> dict | None:
    try:
        data = orjson.loads((Path(folder) / MARKER).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(folder: Path, marker: dict) -> None:
    write_json(Path(folder) / MARKER, {"nerkd": 1, **marker})


def _legacy_nerkd(folder: Path) -> bool:
    """Written by nerkd before the marker: a config.json with nerkd metadata, a checkpoint, or the
    settings.yaml of a run beside another of its files (a run killed before it saved a model)."""
    try:
        raw = orjson.loads((folder / "config.json").read_bytes())
        if isinstance(raw, dict) and "nerkd" in raw:
            return True
    except (OSError, orjson.JSONDecodeError):
        pass
    ckpt = folder / CHECKPOINTS
    if any((ckpt / name / "state.json").is_file() for name in ("last", ".last.old")):
        return True
    return (folder / "settings.yaml").is_file() and any((folder / name).is_file() for name in RUN_NAMES - {
        "settings.yaml"})


def is_nerkd_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / MARKER).is_file() or _legacy_nerkd(folder)


def is_model_name(name: str) -> bool:
    return name in MODEL_NAMES or any(fnmatch.fnmatchcase(name, p) for p in MODEL_PATTERNS)


def _known(name: str) -> bool:
    return is_model_name(name) or name in RUN_NAMES or name in (CHECKPOINTS, MARKER, LOCK)


def has_model(folder: str | Path) -> bool:
    """A loadable model folder: ``config.json`` and safetensors weights."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []


def _describe(entries: list[Path], limit: int = 6) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in entries]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_output(folder: str | Path, overwrite: bool = False, option: str | None = "--output", *,
                 writes: Callable[[str], bool] | None = None) -> None:
    """Refuse a file, a non-empty folder that is not nerkd's (unless ``overwrite``) and, with
    ``writes`` (the names the command may write there), a folder holding a file of the user's
    under such a name (:func:`check_foreign`)."""
    folder = Path(folder)
    where = f"{option} {folder}" if option else str(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{where}: is a file, not a folder")
    if not folder.is_dir():
        return
    nerkd = is_nerkd_folder(folder)
    entries = [p for p in _entries(folder) if p.name != LOCK]
    if not overwrite and not nerkd and entries:
        hint = "pass --overwrite" if option else "pass overwrite=True"
        raise RunFolderError(f"{where}: folder exists and is not a nerkd model folder (it holds "
                             f"{_describe(entries)}); choose an empty folder or {hint}")
    if writes is not None:
        mine = _foreign(folder) if (folder / MARKER).is_file() else set() if nerkd else {p.name for p in entries}
        check_foreign(folder, [name for name in mine if writes(name)], option)


def check_foreign(folder: Path, names: list[str], option: str | None = "--output") -> None:
    """Refuse to write over the user's own files (``--overwrite`` keeps them, never replaces them)."""
    names = sorted(n for n in names if (Path(folder) / n).exists())
    if names:
        where = f"{option} {folder}" if option else str(folder)
        them = "it" if len(names) == 1 else "them"
        raise RunFolderError(f"{where}: holds your {', '.join(names)} (not written by nerkd), which nerkd would "
                             f"replace: move {them} out of the folder or choose another folder")


class OutputIsInputError(RunFolderError, SettingsError):
    """An output that is, or would write over, one of the command's inputs."""


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_not_input(output: str | Path, inputs: dict[str, str | Path | None], option: str | None = "--output", *,
                    folder: bool = True, writes: Callable[[str], bool] | None = None) -> None:
    """Refuse an ``output`` that would write over one of the command's ``inputs`` (before anything
    is loaded). ``inputs``: ``{what: path}``, ``what`` a noun phrase for the message ("the teacher
    (teacher.model)"); hub ids and missing paths are passed by. Compared by real path (symlinks
    resolved): an output that is an input; for an output folder (``folder``), an input inside it
    under a name nerkd writes or deletes there (``writes``, default: a model or run file,
    ``checkpoints/``); for an output file, an existing file of an input folder."""
    out = _real(Path(output))
    where = f"{option} {output}" if option else str(output)
    writes = writes or _known
    for what, ref in inputs.items():
        if not ref or not Path(ref).exists():
            continue
        src = _real(Path(ref))
        if src == out:
            raise OutputIsInputError(f"{where}: is {what}; nerkd would write over it: choose another "
                                     f"{'folder' if folder else 'file'}")
        if folder and src.is_relative_to(out) and writes(src.relative_to(out).parts[0]):
            raise OutputIsInputError(f"{where}: holds {what} ({src.relative_to(out)}), which nerkd would write "
                                     f"over: choose another folder")
        if not folder and src.is_dir() and out.is_relative_to(src) and out.exists():
            raise OutputIsInputError(f"{where}: is a file of {what}; nerkd would write over it: choose another file")


def adopt(folder: str | Path) -> dict:
    """Make ``folder`` nerkd's (create it, write the marker); returns the marker.

    The marker's ``foreign`` lists what was there before nerkd wrote anything, never removed:
    everything in a folder that was not nerkd's (``--overwrite``), the unknown names in a nerkd
    folder from before the marker.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = read_marker(folder)
    if marker is not None:
        return marker
    legacy = _legacy_nerkd(folder)
    foreign = [p.name for p in _entries(folder) if p.name != LOCK and not (legacy and _known(p.name))]
    marker = {"foreign": foreign, "model_files": []}
    _write_marker(folder, marker)
    return marker


def _foreign(folder: Path) -> set[str]:
    marker = read_marker(folder) or {}
    return set(marker.get("foreign") or [])


def model_files(folder: str | Path) -> list[str]:
    """nerkd model files present at ``folder``'s root (known names and those recorded at the last save)."""
    folder = Path(folder)
    marker = read_marker(folder) or {}
    recorded = set(marker.get("model_files") or [])
    foreign = set(marker.get("foreign") or [])
    return sorted(p.name for p in _entries(folder)
                  if p.is_file() and p.name not in foreign and (is_model_name(p.name) or p.name in recorded))


# -- writing a model -------------------------------------------------------------------------
def _chmod_tree(path: Path) -> None:
    os.chmod(path, default_mode(directory=path.is_dir()))
    if path.is_dir():
        for child in path.iterdir():
            _chmod_tree(child)


def install_model(new: Path, folder: Path) -> list[str]:
    """Move the model files written to ``new`` (a folder inside ``folder``) into ``folder``,
    replacing the previous model as a unit and keeping every other file (see the module doc)."""
    names = sorted(p.name for p in new.iterdir() if p.name != TEMP_MARK)
    check_foreign(folder, [n for n in names if n in _foreign(folder)], option=None)
    clash = [n for n in names if (folder / n).is_dir()]
    if clash:
        raise RunFolderError(f"{folder}: cannot write the model's {', '.join(clash)}: a folder has that name")
    old = set(model_files(folder))
    _chmod_tree(new)
    hashes = {n: file_sha256(new / n) for n in names if n.endswith(WEIGHT_SUFFIXES)}
    cfg = folder / "config.json"
    same_config = cfg.is_file() and (new / "config.json").is_file() and \
        cfg.read_bytes() == (new / "config.json").read_bytes()
    if same_config:
        # the old and the new weights both fit this config: config files first, weights last
        order = sorted(names, key=lambda n: (n.endswith(".safetensors"), n != "config.json"))
    else:
        # a different model: no config.json until every file of the new one is in place
        cfg.unlink(missing_ok=True)
        order = [n for n in names if n != "config.json"] + (["config.json"] if "config.json" in names else [])
    for name in sorted(old - set(names)):
        (folder / name).unlink(missing_ok=True)
    for name in order:
        os.replace(new / name, folder / name)
    marker = read_marker(folder) or {"foreign": []}
    marker["model_files"] = names
    marker["sha256"] = hashes
    _write_marker(folder, marker)
    return names


# -- what was written is what is loaded --------------------------------------------------------
_verify = True


def set_verify(on: bool) -> None:
    """Whether :func:`verify_weights` checks (setting ``models.verify``: the CLI sets it from the
    settings of each command, ``--no-verify`` turns it off)."""
    global _verify
    _verify = bool(on)


def verify_weights(folder: str | Path, verify: bool | None = None) -> list[str]:
    """Check a model folder's weight files against the sha256 that nerkd recorded in the marker when
    it wrote them (once per load, read in 1 MiB blocks); a mismatch is a :class:`ModelLoadError`
    naming the file. A folder without recorded hashes (not written by nerkd, or before they were
    recorded) passes. ``verify`` None: as :func:`set_verify` says. Returns the names checked."""
    if not (_verify if verify is None else verify):
        return []
    folder = Path(folder)
    recorded = (read_marker(folder) or {}).get("sha256") or {}
    checked = []
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            continue                     # the loader names a missing file
        if file_sha256(path) != digest:
            raise ModelLoadError(f"{path}: its sha256 differs from the one nerkd recorded when it wrote this file "
                                 f"(corrupt, or edited): restore it, or pass --no-verify (models.verify: false) to "
                                 f"load it as it is")
        checked.append(name)
    return checked


# -- clean-up --------------------------------------------------------------------------------
def temp_folder(parent: str | Path, kind: str) -> Path:
    """A new temporary folder of nerkd's in ``parent``: ``.<kind>.tmp-XXXXXXXX.nerkd-tmp`` (``kind``:
    save or last) holding the marker file :data:`TEMP_MARK`; a killed write leaves it to
    :func:`clean_leftovers`, which removes nothing without both."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}.tmp-", suffix=TEMP_SUFFIX, dir=parent))
    (tmp / TEMP_MARK).touch()
    return tmp


def is_temp_folder(path: Path) -> bool:
    return (_TEMP_DIR.fullmatch(path.name) is not None and path.is_dir() and not path.is_symlink()
            and (path / TEMP_MARK).is_file())


def _is_leftover_file(path: Path) -> bool:
    tmp = _ATOMIC_TMP.fullmatch(path.name)
    return path.is_file() and not path.is_symlink() and (
        (tmp is not None and _known(tmp[1])) or _STALE_LOCK.fullmatch(path.name) is not None)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(folder: str | Path, log: Log = _quiet) -> list[str]:
    """Remove what killed writes left behind in ``folder`` and its ``checkpoints/``: nerkd's own
    temporaries only (the names above; a folder also needs its marker file), never anything beside
    ``folder``; returns them, relative to ``folder``'s parent."""
    folder = Path(folder)
    ckpt = folder / CHECKPOINTS
    found = [entry for entry in [*_entries(folder), *_entries(ckpt)]
             if is_temp_folder(entry) or _is_leftover_file(entry)]
    old_ckpt = ckpt / ".last.old"
    if old_ckpt.exists() and _checkpoint_complete(ckpt / "last"):
        found.append(old_ckpt)           # else it is the one complete checkpoint: find_last uses it
    for path in found:
        _remove(path)
    if found:
        names = ", ".join(str(p.relative_to(folder.parent)) for p in found)
        log(f"removed {len(found)} leftover{'s' if len(found) > 1 else ''} of interrupted writes: {names}")
    return [str(p.relative_to(folder.parent)) for p in found]


# -- checkpoints: where the resumable state lives (written by nerkd.train.checkpoint) ----------
LAST = Path("checkpoints") / "last"
CHECKPOINT_FILES = ("model.safetensors", "train_state.pt", "state.json")


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds every file of a resumable checkpoint."""
    return all((Path(folder) / f).is_file() for f in CHECKPOINT_FILES)


def find_last(out_dir: Path) -> Path | None:
    """The newest complete resumable checkpoint under ``out_dir`` (None when there is none)."""
    final = Path(out_dir) / LAST
    for folder in (final, final.with_name(".last.old")):
        if is_complete(folder):
            return folder
    return None


def read_state(folder: Path) -> dict:
    """``state.json`` of a checkpoint folder."""
    try:
        return orjson.loads((Path(folder) / "state.json").read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise TrainingError(f"{folder}: unreadable state.json ({str(e).splitlines()[0][:200]})") from e


def _checkpoint_complete(folder: Path) -> bool:
    return is_complete(folder)


def clear_checkpoints(folder: str | Path) -> list[str]:
    """Remove nerkd's checkpoints (``checkpoints/last``, ``.last.old``, temporaries); returns them."""
    ckpt = Path(folder) / CHECKPOINTS
    gone = []
    for entry in _entries(ckpt):
        if entry.name in ("last", ".last.old") or is_temp_folder(entry):
            _remove(entry)
            gone.append(f"{CHECKPOINTS}/{entry.name}")
    if ckpt.is_dir() and not any(ckpt.iterdir()):
        ckpt.rmdir()
    return gone


def clear_previous_run(folder: str | Path, log: Log = _quiet, resumable: bool = True) -> list[str]:
    """Remove the previous run's model, run files and checkpoints from nerkd's ``folder``
    (never a foreign entry); returns what was removed. ``resumable``: the command has ``--resume``
    (the log line says so; prune and export have none)."""
    folder = Path(folder)
    if not is_nerkd_folder(folder):
        return []
    foreign = _foreign(folder)
    gone = clear_checkpoints(folder)      # only nerkd's names in it, as the training loop does
    for name in [*model_files(folder), *sorted(RUN_NAMES)]:
        path = folder / name
        if name not in foreign and path.is_file():
            path.unlink()
            gone.append(name)
    marker = read_marker(folder)
    if marker is not None:
        marker["model_files"] = []
        marker.pop("sha256", None)
        _write_marker(folder, marker)
    if gone:
        hint = " (use --resume to continue it)" if resumable else ""
        log(f"new run in {folder}: removed the previous run's {', '.join(gone)}{hint}")
    return gone


# -- the lock --------------------------------------------------------------------------------
def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read_lock(path: Path) -> dict | None:
    """The lock's owner (``{"pid": ...}``); ``{}`` when unreadable; None when there is no lock."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = raw.decode("ascii", "replace").split()[:1]
        data = {"pid": data[0]} if data else {}
    if isinstance(data, int):
        data = {"pid": data}
    if not isinstance(data, dict):
        return {}
    try:
        data["pid"] = int(data["pid"])
    except (KeyError, TypeError, ValueError):
        return {}
    return data


def _alive(owner: dict, path: Path) -> bool:
    if "pid" not in owner:   # being written right now, or garbage left by a crash
        try:
            return time.time() - path.stat().st_mtime < STALE_LOCK_AGE_S
        except FileNotFoundError:
            return False
    if owner.get("host") not in (None, socket.gethostname()):
        return True          # another machine's process: cannot be checked from here
    pid = owner["pid"]
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = owner.get("start")
    return start is None or _proc_start(pid) in (None, start)


class RunLock:
    """``<folder>/.nerkd.lock``: one nerkd run writes to a folder at a time."""

    def __init__(self, folder: str | Path, option: str | None = "--output"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.option = option
        self.held = False

    def acquire(self, log: Log = _quiet) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, default_mode())
            except FileExistsError:
                owner = _read_lock(self.path)
                if owner is None:
                    continue
                if _alive(owner, self.path):
                    raise RunFolderError(self._busy(owner)) from None
                if self._take_over(owner):
                    what = f"PID {owner['pid']} has ended" if "pid" in owner else "unreadable"
                    log(f"{self.folder}: took over a stale lock ({what})")
                continue
            me = os.getpid()
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps({"pid": me, "host": socket.gethostname(), "start": _proc_start(me)}) + b"\n")
            self.held = True
            return
        raise RunFolderError(self._busy(_read_lock(self.path) or {}))

    def _busy(self, owner: dict) -> str:
        where = f"{self.option} {self.folder}" if self.option else str(self.folder)
        pid = f"PID {owner['pid']}" if "pid" in owner else "a process starting up"
        host = f" on {owner['host']}" if owner.get("host") not in (None, socket.gethostname()) else ""
        return (f"{where}: another nerkd run ({pid}{host}) is writing to this folder (lock {self.path}); wait for "
                f"it to end, or delete the lock file if that process is not nerkd")

    def _take_over(self, owner: dict) -> bool:
        """Set a stale lock aside; False when another process replaced it meanwhile (then put back)."""
        aside = self.path.with_name(f"{LOCK}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        if _read_lock(aside) != owner:
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        if self.held:
            owner = _read_lock(self.path)
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


# -- a run -----------------------------------------------------------------------------------
class RunFolder:
    """The output folder of a command, as a context manager (see the module doc).

    On entry: with ``resume``, a resumable checkpoint must exist (checked before anything is
    loaded); the folder must be empty, nerkd's, or ``overwrite`` given; the lock is taken;
    leftovers of killed writes are removed. :meth:`fresh_start` (called just before the first
    write of a run without ``resume``) removes the previous run's files. On exit the lock is
    released, and a folder this run created but left empty is removed. With ``training``, Ctrl-C
    becomes :class:`RunInterrupted`, saying whether there is a checkpoint to resume from.

    Under torchrun only rank 0 (``main``) checks, locks and writes.
    """

    def __init__(self, folder: str | Path, *, overwrite: bool = False, resume: bool = False, main: bool = True,
                 training: bool = True, log: Log = _quiet, option: str | None = "--output"):
        self.folder = Path(folder)
        self.overwrite, self.resume, self.main, self.training = overwrite, resume, main, training
        self.log, self.option = log, option
        self.lock = RunLock(self.folder, option)
        self.created = False
        self.marked = False
        self.started = False

    def __enter__(self) -> RunFolder:
        if self.resume:
            if find_last(self.folder) is None:
                raise TrainingError(f"nothing to resume in {self.folder}: no checkpoints/last (run without --resume)")
        if not self.main:
            return self
        check_output(self.folder, self.overwrite, self.option, writes=_known)
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock.acquire(self.log)
        try:
            clean_leftovers(self.folder, self.log)
            self.marked = read_marker(self.folder) is None
            adopt(self.folder)
        except BaseException:
            self._release()
            raise
        return self

    def fresh_start(self) -> None:
        """Before the first write of a new run: remove the previous run's files (once)."""
        if self.main and not self.resume and not self.started:
            clear_previous_run(self.folder, self.log, resumable=self.training)
        self.started = True

    def __exit__(self, exc_type, exc, tb) -> None:
        self._release()
        if (self.training and exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
                and not isinstance(exc, RunInterrupted)):
            raise RunInterrupted(interrupted_message(self.folder, self.resume)) from exc

    def _release(self) -> None:
        if not self.main:
            return
        try:
            left = [p for p in _entries(self.folder) if p.name not in (MARKER, LOCK)]
            foreign = _foreign(self.folder)
            if self.marked and all(p.name in foreign for p in left):   # nothing of nerkd's was written
                (self.folder / MARKER).unlink(missing_ok=True)
        finally:
            self.lock.release()
        if self.created and not any(self.folder.iterdir()):
            self.folder.rmdir()


# how to finish a run of each training stage (the fingerprint's stage; teacher: finetune --base)
_FINISH = {"distill": "nerkd distill", "finetune": "nerkd finetune", "teacher": "nerkd finetune --base"}


def unfinished_run(folder: str | Path) -> str | None:
    """How far the training run in ``folder`` got if it did not finish (killed or interrupted: its last
    checkpoint is not marked finished and it wrote no ``train_summary.json``), e.g. ``distill run stopped in
    epoch 2 of 5 (step 40; the model there is from epoch 1)``; None for a finished run, or a folder that
    holds no training run."""
    folder = Path(folder)
    found = find_last(folder)
    if found is None or (folder / "train_summary.json").is_file():
        return None
    try:
        state = read_state(found)
        if state.get("finished"):
            return None
        stage = str((state.get("fingerprint") or {}).get("stage") or "training")
        epoch, pos, total = int(state["epoch"]), int(state.get("pos", 0)), (state.get("plan") or {}).get("epochs")
        of = f" of {total}" if total else ""
        where = f"after epoch {epoch - 1}{of}" if pos == 0 else f"in epoch {epoch}{of}"
        best = state.get("best_epoch")
        model = f"; the model there is from epoch {best}" if best else ""
        return f"{stage} run stopped {where} (step {int(state['step'])}{model})"
    except (NerkdError, KeyError, TypeError, ValueError):
        return "training run did not finish (its checkpoint's state.json is unreadable)"


def check_finished(folder: str | Path, option: str = "--model") -> None:
    """Refuse (one line) a model folder whose training run did not finish (:func:`unfinished_run`): say
    which epoch it holds and how to finish it."""
    found = unfinished_run(folder)
    if found is None:
        return
    stage = found.split(" ", 1)[0]
    command = _FINISH.get(stage)
    finish = f"{command} ... --output {folder} --resume" if command else "its command plus --resume"
    raise RunFolderError(f"{option} {folder}: an unfinished run: {found}; finish it first ({finish}), or give a "
                         "finished model folder")


def interrupted_message(folder: str | Path, resumed: bool = False) -> str:
    """What Ctrl-C left: the checkpoint to resume from, or nothing."""
    found = find_last(Path(folder))
    if found is None:
        return "interrupted before the first checkpoint: nothing to resume"
    try:
        state = read_state(found)
        epoch = int(state["epoch"]) - (1 if int(state.get("pos", 0)) == 0 else 0)
        where = f" (epoch {epoch}, step {int(state['step'])})"
    except (NerkdError, KeyError, TypeError, ValueError):
        where = ""
    plus = "" if resumed else " plus --resume"
    return f"interrupted: checkpoint at {found}{where}; resume with the same command{plus}"
