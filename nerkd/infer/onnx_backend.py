"""ONNX Runtime as a CPU backend of the inference engine (``--backend onnx``).

:class:`OnnxModel` wraps an ``onnxruntime.InferenceSession`` over the ``model.onnx`` of a folder
written by ``nerkd export --format onnx`` and offers what :class:`~nerkd.infer.engine.Engine`
uses of a :class:`~nerkd.models.ner.NerModel`: ``model(input_ids, attention_mask).logits`` (a
torch tensor), ``labels``, ``crf`` (rebuilt from the manifest's transitions, so that decoding is
the same code and the same numbers as with torch), ``config`` (the position limit), ``eval()``,
``to()`` and ``parameters()``. Words, windows, batching and decoding stay in nerkd.

onnxruntime is an optional dependency (``pip install 'nerkd[onnx]'``): it is imported only when a
model is loaded, and its absence is a one-line :class:`MissingExtraError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import orjson
import torch

from nerkd.data.labels import LabelSpace
from nerkd.errors import MissingExtraError, ModelLoadError, SettingsError, require_extra  # noqa: F401 - MissingExtraError: part of this module's API

INSTALL = "pip install 'nerkd[onnx]'"
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
FORMAT_ONNX = "nerkd-onnx"


def require_onnx(what: str = "the onnx backend", modules: tuple[str, ...] = ("onnxruntime",)) -> None:
    """Raise :class:`MissingExtraError` (one line naming the pip command) unless ``modules`` import."""
    require_extra("onnx", what, modules)


def read_manifest(folder: str | Path) -> dict | None:
    """The ``manifest.json`` of a nerkd export folder, or None when ``folder`` has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: cannot read the export manifest ({e})") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("nerkd-"):
        raise ModelLoadError(f"{path}: not a nerkd export manifest (no \"format\": \"nerkd-...\")")
    return data


def is_onnx_export(ref: str | Path) -> bool:
    """True for a folder written by ``nerkd export --format onnx`` (its manifest says so)."""
    folder = Path(ref)
    if not (folder / MANIFEST).is_file():
        return False
    try:
        return (read_manifest(folder) or {}).get("format") == FORMAT_ONNX
    except ModelLoadError:
        return False


def resolve_backend(ref: str | Path, backend: str) -> str:
    """``torch`` or ``onnx`` for ``ref``: ``auto`` is onnx for an ONNX export folder, torch otherwise."""
    if backend not in ("auto", "torch", "onnx"):
        raise SettingsError(f"backend {backend!r}: expected auto, torch or onnx")
    onnx = is_onnx_export(ref)
    if backend == "auto":
        return "onnx" if onnx else "torch"
    if backend == "torch" and onnx:
        raise SettingsError(f"{ref} is an ONNX export (nerkd export --format onnx): run it with --backend onnx, "
                            "or give the torch model folder it was exported from")
    return backend


class OnnxOutput(NamedTuple):
    logits: torch.Tensor   # [B, T, L] float32, CPU


class _Crf(torch.nn.Module):
    """The CRF's three score tensors (what :class:`~nerkd.decode.Decoder` reads), from the manifest."""

    def __init__(self, crf: dict, num_labels: int):
        super().__init__()
        for name, shape in (("transitions", (num_labels, num_labels)), ("start_transitions", (num_labels,)),
                            ("end_transitions", (num_labels,))):
            value = torch.tensor(crf[name], dtype=torch.float32)
            if tuple(value.shape) != shape:
                raise ModelLoadError(f"export manifest: crf.{name} has shape {tuple(value.shape)}, expected {shape}")
            self.register_buffer(name, value)


class OnnxModel:
    """An ONNX Runtime session with the interface the inference engine uses (see module doc)."""

    backend = "onnx"

    def __init__(self, session, manifest: dict, folder: Path):
        self.session = session
        self.manifest = manifest
        self.folder = folder
        self._labels = LabelSpace(tuple(manifest["labels"]))
        self.crf = _Crf(manifest["crf"], len(self._labels)) if manifest.get("crf") else None
        model = manifest.get("model") or {}
        self.config = SimpleNamespace(model_type=model.get("type", ""),
                                      max_position_embeddings=manifest.get("max_position_embeddings"),
                                      id2label=dict(enumerate(self._labels.labels)),
                                      label2id=self._labels.label2id)
        self.int8 = bool((manifest.get("onnx") or {}).get("int8"))
        self.heads = list(model.get("heads") or [])
        self.is_pruned = bool(model.get("pruned"))
        self._parameters = int(model.get("parameters") or 0)
        self.threads = session.get_session_options().intra_op_num_threads

    @classmethod
    def load(cls, folder: str | Path, *, threads: int | None = None, what: str = "model",
             verify: bool | None = None) -> OnnxModel:
        """Load ``folder/model.onnx`` with ``threads`` intra-op threads (default: torch's thread count),
        first checked against the sha256 nerkd recorded when it wrote it (:func:`nerkd.rundir.verify_weights`;
        ``verify`` None: setting ``models.verify``)."""
        from nerkd.rundir import verify_weights

        folder = Path(folder)
        if not folder.is_dir():
            raise ModelLoadError(f"{what} {folder}: no such folder")
        manifest = read_manifest(folder)
        if not (folder / ONNX_FILE).is_file() or manifest is None or manifest.get("format") != FORMAT_ONNX:
            raise ModelLoadError(f"{what} {folder}: no ONNX export here (no {ONNX_FILE} with its {MANIFEST}): "
                                 f"run nerkd export --format onnx first")
        verify_weights(folder, verify)
        return cls(make_session(folder / ONNX_FILE, threads, what), manifest, folder)

    # -- what the engine uses ---------------------------------------------------------------
    @property
    def labels(self) -> LabelSpace:
        return self._labels

    @property
    def num_labels(self) -> int:
        return len(self._labels)

    def num_parameters(self) -> int:
        return self._parameters

    def parameters(self) -> Iterator[torch.Tensor]:
        """One shapeless stand-in holding the source model's parameter count (the weights live in
        the ONNX file): ``sum(p.numel() for p in model.parameters())`` is that count."""
        yield torch.empty(self._parameters, device="meta")

    def eval(self) -> OnnxModel:
        return self

    def to(self, device) -> OnnxModel:
        if torch.device(device).type != "cpu":
            raise SettingsError("the onnx backend runs on CPU only (onnxruntime's CPU provider): use --device cpu")
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> OnnxOutput:
        (logits,) = self.session.run(["logits"], {"input_ids": input_ids.to(torch.int64).numpy(),
                                                   "attention_mask": attention_mask.to(torch.int64).numpy()})
        return OnnxOutput(torch.from_numpy(logits))

    def check_runtime(self, device: torch.device, precision: str, int8: bool, compile: bool) -> None:
        """Refuse engine options that the exported graph cannot honour (one line each)."""
        if device.type != "cpu":
            raise SettingsError("the onnx backend runs on CPU only (onnxruntime's CPU provider): use --device cpu")
        if precision != "fp32":
            raise SettingsError(f"the onnx backend runs the exported graph as it is: precision {precision} does not "
                                "apply (use fp32; for int8 export with nerkd export --format onnx --int8)")
        if compile:
            raise SettingsError("--compile is for the torch backend: drop it with --backend onnx")
        if int8 and not self.int8:
            raise SettingsError(f"{self.folder} is an fp32 ONNX export: for int8 export it with "
                                f"nerkd export --format onnx --int8 (or drop --int8)")


def make_session(path: str | Path, threads: int | None = None, what: str = "model"):
    """An ONNX Runtime CPU session on ``path``: ``threads`` intra-op threads (default: torch's thread
    count, which ``--threads`` sets), one inter-op thread, sequential execution, errors-only logs.

    The intra-op threads do not spin while they wait for work: with 2 threads on 2 cores and busy
    neighbours, spinning threads fight the neighbours and each other for the cores (the MiniLM student's
    forward pass, load average 2-2.7: 2,923 words/s spinning, 4,492 not; BENCHMARKS.md). With 1 thread
    there is no pool and the setting has no effect."""
    require_onnx()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3   # errors only: no warnings on stderr
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelLoadError(f"{what} {path}: onnxruntime cannot load it ({first})") from e


def load_onnx_tokenizer(folder: str | Path, what: str = "model"):
    """The fast tokenizer saved in an export folder."""
    from transformers import AutoTokenizer

    from nerkd.models.hub import short_reason

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{what} {folder}: cannot load the tokenizer ({short_reason(e)})") from e
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"{what} {folder}: nerkd needs a fast (Rust) tokenizer for word alignment")
    return tok
