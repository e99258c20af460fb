"""What an export folder says about itself (``manifest.json``), and how it is written.

The manifest is the contract with code that runs the export without nerkd: labels, scheme,
CRF transitions, window sizes and, in words, how sub-word logits become tags (the decoding
stays in nerkd: :mod:`nerkd.decode`). It also names the source model by the sha256 of its
weight files (the same convention as ``nerkd serve``'s ``GET /v1/model``), the nerkd version and,
for ONNX, the opset.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from nerkd.errors import NerkdError
from nerkd.infer.onnx_backend import MANIFEST, read_manifest
from nerkd.io import combined_sha256, file_sha256

FORMAT_HF = "nerkd-hf"
MANIFEST_VERSION = 1
SOURCE_SUFFIXES = (".safetensors",)
# what an export writes besides the model files (nerkd.rundir.MODEL_NAMES)
EXPORT_NAMES = frozenset({"model.onnx", "label2id.json", "README.md", MANIFEST})


class ExportError(NerkdError):
    """An export cannot be written or does not reproduce its source model."""


def source_hashes(ref: str | Path) -> dict:
    """``{"sha256": one hash, "weights_sha256": {file: sha256}}`` of a model folder's weight files.

    One file: its sha256 (check it with ``sha256sum``); several (``model.safetensors`` and
    ``crf.safetensors``): the sha256 of their ``sha256sum``-style listing (``<hash>  <name>\\n``,
    sorted by name). A hub id is looked up in the local hub cache; ``sha256`` is None when no
    weight file is found.
    """
    folder = Path(ref)
    if not folder.is_dir():
        folder = _hub_snapshot(str(ref))
    files = {}
    if folder is not None:
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
                 if p.is_file() and p.name.endswith(SOURCE_SUFFIXES)}
    return {"sha256": combined_sha256(files), "weights_sha256": files}


def _hub_snapshot(ref: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, "config.json")
    except Exception:  # noqa: BLE001 - no cache, no hash
        return None
    return Path(found).parent if isinstance(found, str) else None


def decode_rule(scheme: str, crf: bool) -> dict:
    """How nerkd turns the model's logits into tags, as a short method name and a sentence."""
    words = ("Words: nerkd.data.words.split_words (French words with exact character offsets); each word is "
             "tokenised on its own (no special tokens), a window is [CLS/<s>] + the words' sub-words + [SEP/</s>], "
             "long texts are cut at word boundaries into overlapping windows, each word owned by one window. "
             "Each word's score vector is the logits of its first sub-token.")
    if crf:
        method = "crf-viterbi"
        tags = (f"Tags: CRF Viterbi with the manifest's transitions: best path of logits[word] + "
                f"crf.start_transitions (first word) + crf.transitions[previous, current] + crf.end_transitions "
                f"(last word), restricted to valid {scheme} transitions.")
    elif scheme == "IO":
        method = "argmax"
        tags = "Tags: argmax over each word's first sub-token logits (IO: every transition is valid)."
    else:
        method = "constrained-viterbi"
        tags = (f"Tags: argmax over word first sub-token, constrained {scheme} Viterbi: best path of "
                f"log_softmax(logits[word]) restricted to valid {scheme} transitions (no I-X after O or after "
                f"another type).")
    return {"method": method, "text": f"{words} {tags}", "code": "nerkd.decode.Decoder"}


def crf_tables(crf) -> dict | None:
    """The CRF's transitions (lists of floats), or None."""
    if crf is None:
        return None
    return {name: getattr(crf, name).detach().float().cpu().tolist()
            for name in ("transitions", "start_transitions", "end_transitions")}


def base_manifest(fmt: str, ref: str | Path, model, *, max_length: int, stride: int) -> dict:
    """The fields every export shares (``model``: the loaded :class:`~nerkd.models.ner.NerModel`)."""
    from nerkd import __version__
    from nerkd.models.ner import position_limit

    space = model.labels
    config = model.config
    heads = model.heads
    limit = position_limit(config)
    return {
        "format": fmt,
        "manifest_version": MANIFEST_VERSION,
        "nerkd_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"model": str(ref), **source_hashes(ref)},
        "model": {"type": config.model_type, "parameters": int(model.num_parameters()),
                  "layers": len(heads), "heads": heads, "num_attention_heads": int(config.num_attention_heads),
                  "pruned": bool(model.is_pruned)},
        "labels": list(space.labels),
        "id2label": {str(i): lab for i, lab in enumerate(space.labels)},
        "label2id": space.label2id,
        "scheme": space.scheme,
        "crf": crf_tables(model.crf),
        "max_length": min(max_length, limit) if limit else max_length,
        "stride": stride,
        "position_limit": limit,
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
        "decode": decode_rule(space.scheme, model.crf is not None),
    }


def is_export_folder(folder: Path) -> bool:
    try:
        return read_manifest(folder) is not None
    except NerkdError:
        return False


def check_output(output: Path, source: str | Path, overwrite: bool) -> None:
    """Refuse, before any work: the source folder itself, a folder holding a nerkd model (an export
    would replace its files), or a non-empty folder that is not nerkd's (unless ``overwrite``)."""
    from nerkd import rundir

    output = Path(output)
    rundir.check_not_input(output, {"the model being exported (--model)": source}, writes=export_writes)
    if output.is_dir() and not is_export_folder(output) and rundir.has_model(output):
        raise ExportError(f"--output {output}: holds a nerkd model, not an export (its files would be replaced); "
                          f"choose another folder")
    rundir.check_output(output, overwrite, option="--output", writes=export_writes)


def export_writes(name: str) -> bool:
    """A name an export writes in its folder."""
    from nerkd import rundir

    return rundir.is_model_name(name) or name in EXPORT_NAMES


def install(output: Path, source: str | Path, fill: Callable[[Path], None], *, overwrite: bool) -> list[str]:
    """Write an export: ``fill(tmp)`` writes every file into a temporary folder inside ``output``,
    then they are moved in by renames (:func:`nerkd.rundir.install_model`: a previous export's files
    are replaced as a unit, nothing nerkd did not write is removed). Returns the file names."""
    from nerkd import rundir

    output = Path(output)
    check_output(output, source, overwrite)
    created = not output.exists()
    rundir.adopt(output)
    tmp = rundir.temp_folder(output, "save")
    try:
        fill(tmp)
        return rundir.install_model(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["FORMAT_HF", "MANIFEST", "ExportError", "base_manifest", "check_output", "install", "source_hashes"]
