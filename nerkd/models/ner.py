"""``NerModel``: a Hugging Face token classifier plus an optional CRF, with nerkd's own
save/load that also restores pruned attention heads.

Saved layout (safetensors only)::

    config.json          transformers config + "nerkd": {"crf": bool, "heads": [per-layer] | null}
    model.safetensors    encoder + classifier weights
    crf.safetensors      CRF transitions (only with a CRF)
    tokenizer.json ...   the tokenizer

A pruned checkpoint (different head counts per layer) is saved with ``model_type`` set to
``nerkd-pruned`` so that plain ``AutoModelForTokenClassification`` refuses it loudly ("unrecognized
model") instead of loading mismatched shapes; :meth:`NerModel.load` restores the real
``model_type`` and rebuilds the sliced shapes before loading the weights.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from nerkd.data.labels import LabelSpace
from nerkd.errors import ModelLoadError
from nerkd.models.heads import apply_head_layout, head_counts
from nerkd.models.hub import check_ref, short_reason

PRUNED_MODEL_TYPE = "nerkd-pruned"
_ROBERTA_LIKE = ("roberta", "camembert", "xlm-roberta")  # positions start at padding_idx + 1


class NerOutput(NamedTuple):
    logits: torch.Tensor                         # [B, T, L]
    hidden_states: tuple[torch.Tensor, ...] | None  # (embeddings, layer 1..N), each [B, T, H]


class NerModel(nn.Module):
    def __init__(self, encoder_model: nn.Module, crf: bool = False):
        super().__init__()
        self.encoder_model = encoder_model
        self.crf = None
        if crf:
            from torchcrf import CRF

            self.crf = CRF(self.num_labels, batch_first=True)

    # -- description -------------------------------------------------------------------
    @property
    def config(self):
        return self.encoder_model.config

    @property
    def labels(self) -> LabelSpace:
        return LabelSpace.from_config(self.config)

    @property
    def num_labels(self) -> int:
        return len(self.config.id2label)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def heads(self) -> list[int]:
        return head_counts(self)

    @property
    def is_pruned(self) -> bool:
        return any(n != self.config.num_attention_heads for n in self.heads)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- compute -----------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False) -> NerOutput:
        out = self.encoder_model(input_ids=input_ids, attention_mask=attention_mask,
                                 output_hidden_states=output_hidden_states)
        return NerOutput(out.logits, out.hidden_states if output_hidden_states else None)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, config, crf: bool = False) -> NerModel:
        from transformers import AutoModelForTokenClassification

        return cls(AutoModelForTokenClassification.from_config(config), crf=crf)

    # -- persistence -------------------------------------------------------------------
    def save(self, folder: str | Path, tokenizer=None, *, overwrite: bool = False) -> Path:
        """Save into ``folder``, replacing only a previous model's files (see :mod:`nerkd.rundir`).

        Written whole to a temporary folder inside ``folder``, then moved in by renames; other
        files (settings, metrics, checkpoints, the user's) are kept. A non-empty folder that is not
        nerkd's is refused unless ``overwrite``; nothing that nerkd did not write is ever deleted.
        """
        from nerkd import rundir
        from nerkd.models import quiet_transformers

        quiet_transformers()
        folder = Path(folder)
        rundir.check_output(folder, overwrite, option=None)
        rundir.adopt(folder)
        tmp = rundir.temp_folder(folder, "save")
        try:
            self._save_into(tmp, tokenizer)
            rundir.install_model(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _save_into(self, folder: Path, tokenizer) -> None:
        from safetensors.torch import save_file

        cfg = self.config
        heads = self.heads if self.is_pruned else None
        cfg.nerkd = {"crf": self.crf is not None, "heads": heads, "version": 1}
        self.encoder_model.save_pretrained(folder, safe_serialization=True)
        if heads is not None:
            cfg_path = folder / "config.json"
            data = json.loads(cfg_path.read_text(encoding="utf-8"))
            data["nerkd"]["base_model_type"] = data["model_type"]
            data["model_type"] = PRUNED_MODEL_TYPE
            cfg_path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        if self.crf is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.crf.state_dict().items()},
                      str(folder / "crf.safetensors"))
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    @classmethod
    def load(cls, ref: str | Path, *, revision: str | None = None, trust_remote_code: bool = False,
             what: str = "model", option: str | None = None, verify: bool | None = None) -> NerModel:
        """Load a token classifier from a local folder or a hub id (eval mode, fp32, CPU).

        ``option`` names how the user gave ``ref`` (``"--model"``, ``"teacher.model"``) for the error
        messages (see :func:`nerkd.models.hub.check_ref`). A local folder's weights are first checked
        against the sha256 nerkd recorded when it wrote them (:func:`nerkd.rundir.verify_weights`;
        ``verify`` None: setting ``models.verify``, as the CLI set it)."""
        from safetensors import SafetensorError

        from nerkd.models import quiet_transformers

        quiet_transformers()
        ref = str(ref)
        kind = check_ref(ref, what, option)
        try:
            if kind == "local":
                model = _load_local(Path(ref), trust_remote_code, verify)
            else:
                from transformers import AutoModelForTokenClassification

                model = cls(AutoModelForTokenClassification.from_pretrained(
                    ref, revision=revision, trust_remote_code=trust_remote_code))
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            raise ModelLoadError(f"{what} {ref}: cannot load ({short_reason(e)})") from e
        model.eval()
        return model


def read_config_json(folder: Path) -> dict:
    """A model folder's ``config.json`` as a dict; a one-line ModelLoadError naming the file otherwise."""
    import orjson

    path = folder / "config.json"
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ModelLoadError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} "
                             f"({e.msg.split(':')[0]})") from None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror or short_reason(e)})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    check_config_fields(path, raw)
    return raw


_FIELD = re.compile(r"field '([^']+)'")


def check_config_fields(path: Path, raw: dict) -> None:
    """Build the transformers config of ``raw`` (cheap, no weights), so that a field of the wrong type
    (``"num_hidden_layers": "x"``) is named in one line with its file instead of failing deep inside
    transformers. An unknown ``model_type`` is left to the loader (it has its own message)."""
    from transformers import CONFIG_MAPPING, AutoConfig

    raw = dict(raw)
    if raw.get("model_type") == PRUNED_MODEL_TYPE:
        raw["model_type"] = (raw.get("nerkd") or {}).get("base_model_type", "camembert")
    if raw.get("model_type") not in CONFIG_MAPPING:
        return
    try:
        AutoConfig.for_model(**raw)
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ModelLoadError(f"{path}: {_config_reason(e)}") from None
    except Exception as e:  # huggingface_hub's StrictDataclassError: a field of the wrong type
        if type(e).__name__ not in ("StrictDataclassFieldValidationError", "StrictDataclassError"):
            raise
        raise ModelLoadError(f"{path}: {_config_reason(e)}") from None


def _config_reason(e: BaseException) -> str:
    """``field num_hidden_layers: expected int, got str (value: 'x')`` from transformers' config errors."""
    field = _FIELD.search(str(e))
    cause = e.__cause__ if e.__cause__ is not None else e
    reason = short_reason(cause)
    if field is None:
        return f"invalid config ({reason})"
    reason = re.sub(rf"^Field '{re.escape(field[1])}' ", "", reason)
    return f"field {field[1]}: {reason}"


def check_safetensors(path: Path) -> None:
    """Read the header of a ``.safetensors`` file (cheap: no tensor is loaded), so that a truncated
    or corrupt file is named in one line instead of failing deep inside transformers."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as e:
        raise ModelLoadError(f"{path}: corrupt or truncated safetensors file ({short_reason(e)})") from None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror or short_reason(e)})") from None


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    check_safetensors(path)
    return load_file(str(path))


def _load_local(folder: Path, trust_remote_code: bool, verify: bool | None = None) -> NerModel:
    from transformers import AutoConfig, AutoModelForTokenClassification

    from nerkd.rundir import verify_weights

    for path in sorted(folder.glob("*.safetensors")):    # a truncated file is said as such, before its hash
        check_safetensors(path)
    verify_weights(folder, verify)
    raw = read_config_json(folder)
    meta = raw.get("nerkd") or {}
    if raw.get("model_type") == PRUNED_MODEL_TYPE:
        raw["model_type"] = meta.get("base_model_type", "camembert")
        config = AutoConfig.for_model(**raw)
        encoder = AutoModelForTokenClassification.from_config(config)
        model = NerModel(encoder, crf=bool(meta.get("crf")))
        apply_head_layout(model, list(meta["heads"]))
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{folder}: pruned model without model.safetensors")
        state = _load_weights(weights)
        missing, unexpected = model.encoder_model.load_state_dict(state, strict=False)
        tied = set(getattr(encoder, "_tied_weights_keys", None) or [])
        missing = [k for k in missing if k not in tied and "position_ids" not in k]
        if missing or unexpected:
            raise ModelLoadError(f"{folder}: weights do not match the pruned layout "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    else:
        weight_files = sorted(folder.glob("*.safetensors"))
        if not weight_files:
            raise ModelLoadError(f"{folder}: no safetensors weights (nerkd only loads safetensors)")
        for path in weight_files:
            check_safetensors(path)
        encoder = AutoModelForTokenClassification.from_pretrained(
            folder, trust_remote_code=trust_remote_code, use_safetensors=True)
        model = NerModel(encoder, crf=bool(meta.get("crf")))
    if model.crf is not None:
        crf_file = folder / "crf.safetensors"
        if not crf_file.is_file():
            raise ModelLoadError(f"{folder}: config says CRF but crf.safetensors is missing")
        model.crf.load_state_dict(_load_weights(crf_file))
    return model


def load_tokenizer(ref: str | Path, *, revision: str | None = None, trust_remote_code: bool = False,
                   what: str = "tokenizer", option: str | None = None):
    """A fast tokenizer (needed for word alignment and offsets)."""
    from transformers import AutoTokenizer

    ref = str(ref)
    if check_ref(ref, what, option) == "local":
        read_config_json(Path(ref))  # transformers reads it too: a bad one is named here, in one line
    try:
        tok = AutoTokenizer.from_pretrained(ref, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{what} {ref}: cannot load the tokenizer ({short_reason(e)})") from e
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"{what} {ref}: nerkd needs a fast (Rust) tokenizer for word alignment")
    return tok


def load_config(ref: str | Path, *, revision: str | None = None, trust_remote_code: bool = False,
                what: str = "model", option: str | None = None):
    """Only the config (cheap): labels, sizes, and nerkd's metadata (``config.nerkd``)."""
    from transformers import AutoConfig

    ref = str(ref)
    kind = check_ref(ref, what, option)
    try:
        if kind == "local":
            raw = read_config_json(Path(ref))
            if raw.get("model_type") == PRUNED_MODEL_TYPE:
                raw["model_type"] = (raw.get("nerkd") or {}).get("base_model_type", "camembert")
                return AutoConfig.for_model(**raw)
        return AutoConfig.from_pretrained(ref, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{what} {ref}: cannot read its config ({short_reason(e)})") from e


def position_limit(config) -> int | None:
    """Sub-word tokens (specials included) the model's position embeddings allow."""
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is None:
        return None
    return int(max_pos) - 2 if getattr(config, "model_type", "") in _ROBERTA_LIKE else int(max_pos)
