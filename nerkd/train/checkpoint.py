"""Resumable training state and the best model, written atomically.

``<run>/checkpoints/last/`` holds everything needed to continue a run exactly where it stopped::

    model.safetensors    the model's state dict (encoder, classifier, CRF)
    extras.safetensors   the objective's trainable extras (projections), when it has some
    train_state.pt       optimiser, LR scheduler, GradScaler and per-rank torch/CUDA RNG states
                         (tensors and plain containers only: read back with weights_only=True)
    state.json           the loop's :class:`~nerkd.train.loop.TrainState` (position: epoch, batch in
                         the epoch, optimiser step; best F1, patience, history, running metric sums,
                         the run's plan and fingerprint) plus the python/numpy RNG states

The folder is written under a temporary name then swapped in by renames, so a crash while saving
leaves the previous checkpoint intact (:func:`find_last` also accepts the previous one if the
crash hit between the two renames). Files and folder get the umask's permissions, as a plain
``open`` would give (safetensors and ``mkdtemp`` alone make them private).

``state.json`` also records the run's :func:`fingerprint`: every setting that changes training and
the hashes of the data files. ``--resume`` refuses a run whose fingerprint differs
(:func:`fingerprint_changes`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import orjson
import torch
from torch import nn

from nerkd.data import brat
from nerkd.errors import DataError, TrainingError
from nerkd.io import default_mode, write_json

# where a checkpoint lives and how to find the newest complete one are the run folder's rules
from nerkd.rundir import LAST, find_last, is_complete, read_state, temp_folder  # noqa: F401 - the loop's API
from nerkd.settings import Settings


# -- RNG ------------------------------------------------------------------------------------
def rng_state() -> dict:
    """This process's RNG states: ``torch``/``cuda`` as tensors, ``python``/``numpy`` as lists."""
    py = random.getstate()
    state: dict = {"python": [py[0], list(py[1]), py[2]], "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:  # pragma: no cover - numpy comes with torch/transformers
        pass
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- saving ---------------------------------------------------------------------------------
def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_last(out_dir: Path, *, model: nn.Module, extras: list[nn.Module], optimizer, scheduler, scaler,
              rng: list[dict], state: dict) -> Path:
    """Write ``out_dir/checkpoints/last`` atomically (``rng``: one state per rank)."""
    from safetensors.torch import save_file

    final = Path(out_dir) / LAST
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(final.parent, "last")
    try:
        save_file(_tensors(model), str(tmp / "model.safetensors"))
        if extras:
            save_file(_tensors(nn.ModuleList(extras)), str(tmp / "extras.safetensors"))
        torch_rng = [{k: v for k, v in r.items() if k in ("torch", "cuda")} for r in rng]
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None, "rng": torch_rng},
                   tmp / "train_state.pt")
        host_rng = [{k: v for k, v in r.items() if k in ("python", "numpy")} for r in rng]
        write_json(tmp / "state.json", {**state, "rng": host_rng})
        for path in tmp.iterdir():
            os.chmod(path, default_mode())
        os.chmod(tmp, default_mode(directory=True))
        _swap(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _swap(new: Path, final: Path) -> None:
    old = final.with_name(".last.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


# -- what a run is ----------------------------------------------------------------------------
# settings that do not change what is trained: how often to log and save, where, how fast
COSMETIC = {"train": {"log_every", "checkpoint_every", "device", "compile"}}
# already in the loop's plan (with their effective values: finetune overrides epochs and lr)
IN_PLAN = {"train": {"batch_size", "grad_accum", "seed", "epochs", "max_steps", "lr", "warmup_ratio"},
           "data": {"max_tokens_per_batch"}}
DATA_FILES = ("train", "dev", "label2id")


def _digest_file(digest, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def file_hash(path: str | Path) -> str:
    """sha256 of a file (first 16 hex digits), ``"missing"`` when it cannot be read. BRAT data (a folder, or a
    ``.ann`` or ``.txt`` of a pair) hashes every file the reader reads: names (within a folder) and contents."""
    digest, path = hashlib.sha256(), Path(path)
    try:
        if brat.is_brat(path):
            for name in brat.files(path):
                digest.update(str(name.relative_to(path) if path.is_dir() else name.name).encode() + b"\0")
                _digest_file(digest, name)
        else:
            _digest_file(digest, path)
    except (OSError, DataError):
        return "missing"
    return digest.hexdigest()[:16]


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def fingerprint(settings: Settings, stage: str, extra: dict | None = None) -> dict[str, Any]:
    """Flat ``{"section.key": value}`` of every setting that changes training, the sha256 of the
    data files (their content, not their path) and ``extra`` (the engine's: models, sections)."""
    out: dict[str, Any] = {"stage": stage}
    for section in ("train", "data"):
        skip = COSMETIC.get(section, set()) | IN_PLAN.get(section, set())
        values = getattr(settings, section).model_dump(mode="json")
        for key, value in values.items():
            if key in skip or (section == "data" and (key == "test" or key in DATA_FILES)):
                continue
            _flatten(f"{section}.{key}", value, out)
    for key in DATA_FILES:
        path = getattr(settings.data, key)
        out[f"data.{key} (sha256)"] = file_hash(path) if path else None
    for key, value in (extra or {}).items():
        _flatten(key, value, out)
    return out


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def fingerprint_changes(saved: dict, current: dict) -> list[str]:
    """``"key old -> new"`` for each entry that differs."""
    return [f"{k} {_short(saved.get(k))} -> {_short(current.get(k))}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


# -- loading --------------------------------------------------------------------------------
def load_last(folder: Path, *, model: nn.Module, extras: list[nn.Module], optimizer, scheduler, scaler,
              device: torch.device, rank: int, world_size: int) -> dict:
    """Restore everything saved by :func:`save_last` into the given objects; returns ``state``
    (this rank's RNG states applied when the world size matches)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        state = orjson.loads((folder / "state.json").read_bytes())
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
        if extras:
            path = folder / "extras.safetensors"
            if not path.is_file():
                raise TrainingError(f"{folder}: the objective has trainable extras but extras.safetensors is missing")
            nn.ModuleList(extras).load_state_dict(load_file(str(path), device=str(device)))
        blob = torch.load(folder / "train_state.pt", map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
        raise TrainingError(_unreadable(folder, e, device)) from e
    try:
        optimizer.load_state_dict(blob["optimizer"])
    except ValueError as e:   # other parameter groups: e.g. saved when an emptied layer kept a zero-size parameter
        raise TrainingError(f"{folder / 'train_state.pt'}: cannot resume from this checkpoint: its optimiser state "
                            f"does not fit this model's trainable parameters ({str(e).splitlines()[0][:200]}); "
                            "start a new run without --resume") from e
    scheduler.load_state_dict(blob["scheduler"])
    if scaler is not None and blob["scaler"] is not None:
        scaler.load_state_dict(blob["scaler"])
    saved_world = int(state.get("world_size", 1))
    if saved_world == world_size:
        rng = {**state["rng"][rank], **blob["rng"][rank]}
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [t.cpu() for t in rng["cuda"]]
        set_rng_state(rng)
        state["rng_restored"] = True
    else:
        state["rng_restored"] = False
    return state


def _unreadable(folder: Path, e: Exception, device: torch.device) -> str:
    """load_last's one-line error: the checkpoint file that cannot be read, and why (each file is
    checked again, in load order, to find it; the first readable set means the weights did not fit)."""
    from safetensors import SafetensorError, safe_open

    def reason(err: BaseException) -> str:
        lines = str(err).strip().splitlines()
        return lines[0][:200] if lines else type(err).__name__

    resume = "cannot resume from this checkpoint"
    state = folder / "state.json"
    try:
        orjson.loads(state.read_bytes())
    except orjson.JSONDecodeError as err:
        return f"{state}: {resume}: invalid JSON ({reason(err)})"
    except OSError as err:
        return f"{state}: {resume} ({err.strerror or reason(err)})"
    for name in ("model.safetensors", "extras.safetensors"):
        path = folder / name
        if name == "model.safetensors" or path.exists():
            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except SafetensorError as err:
                return f"{path}: {resume}: corrupt or truncated safetensors file ({reason(err)})"
            except OSError as err:
                return f"{path}: {resume} ({err.strerror or reason(err)})"
    blob = folder / "train_state.pt"
    try:
        torch.load(blob, map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        return f"{blob}: {resume}: corrupt or truncated ({reason(err)})"
    return f"{folder}: {resume}: its weights do not fit this model ({reason(e)})"


# -- best model -----------------------------------------------------------------------------
def save_best(model, tokenizer, out_dir: Path) -> None:
    """Save the model (``NerModel.save``: config, safetensors, CRF, tokenizer) at the run folder
    root without touching the rest of the folder (written whole to a temporary folder, then moved
    in by atomic renames, the weights last: a crash mid-way leaves the previous weights with
    identical config files)."""
    model.save(out_dir, tokenizer=tokenizer, overwrite=True)   # the run folder was checked at the start
