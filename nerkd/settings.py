"""One typed settings model shared by every command.

Precedence, lowest to highest: defaults < YAML file (``--config``) < environment
(``NERKD_SECTION__KEY``) < ``--set section.key=value`` flags. Unknown keys, wrong types and
out-of-range values raise :class:`~nerkd.errors.SettingsError` with a one-line message naming
the key, where it came from and what was expected.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from nerkd.errors import SettingsError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsSettings(Section):
    artifacts: str = "artifacts"


class DataSettings(Section):
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: Literal["auto", "jsonl", "conll", "spans", "labelstudio", "doccano", "brat"] = "auto"
    scheme: Literal["auto", "IO", "BIO", "BIOES"] = "auto"
    label2id: str | None = None
    max_length: int = Field(128, ge=8, le=8192, description="sub-word tokens per window, specials included")
    stride: int = Field(32, ge=0, description="sub-word overlap between windows of a long sentence")
    max_tokens_per_batch: int | None = Field(None, ge=64, description="length-bucketed batches by tokens")
    limit: int | None = Field(None, ge=1, description="read at most this many sentences per file")
    unlabeled: str | None = Field(
        None, description="unlabelled in-domain texts for distillation (the transfer set): plain text, one text "
                          "per line, or JSONL with \"text\", read as nerkd infer reads its input; texts that are "
                          "dev or test sentences, duplicates and empty lines are dropped and counted")

    @model_validator(mode="after")
    def _stride_fits(self) -> DataSettings:
        if self.stride >= self.max_length - 2:
            raise ValueError(f"stride ({self.stride}) must be smaller than max_length - 2 ({self.max_length - 2})")
        return self


class LabelSettings(Section):
    teacher_only: Literal["outside", "ignore"] = Field(
        "outside", description="types only the teacher has (MISC): fold into O, or drop from the KD signal"
    )
    rename: dict[str, str] = Field(default_factory=dict, description="teacher type -> data type, e.g. PERSON: PER")
    drop: list[str] = Field(default_factory=list,
                            description="data types whose tags become O as the data is read, e.g. [MISC]")
    map: dict[str, str] = Field(default_factory=dict,
                                description="data type -> another type or O, as the data is read, e.g. PERSON: PER")

    @field_validator("drop", mode="before")
    @classmethod
    def _one_type(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v   # --set labels.drop=MISC

    @field_validator("drop")
    @classmethod
    def _drop_types(cls, v: list[str]) -> list[str]:
        for t in v:
            _check_type(t)
        return v

    @field_validator("map")
    @classmethod
    def _map_types(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            _check_type(src)
            if dst != "O":
                _check_type(dst, ' or "O"')
        return v

    @model_validator(mode="after")
    def _drop_or_map(self) -> LabelSettings:
        both = sorted(set(self.drop) & set(self.map))
        if both:
            raise ValueError(f"{', '.join(both)} in both labels.drop and labels.map: keep one")
        return self


def _check_type(name: str, alt: str = "") -> None:
    """An entity type name as in the data's tags (``MISC``, not ``B-MISC``)."""
    if not name or name != name.strip() or any(c.isspace() for c in name) or name == "O":
        raise ValueError(f"{name!r} is not an entity type{alt} (a name such as MISC, without spaces)")
    if name[:2] in ("B-", "I-", "E-", "S-"):
        raise ValueError(f"{name!r} is a tag: give its type ({name[2:]}){alt}")


class ModelsSettings(Section):
    verify: bool = Field(True, description="check a model's weight files against the sha256 nerkd recorded when it "
                                           "wrote them, once per load (--no-verify: off, for weights edited on "
                                           "purpose)")


class TeacherSettings(Section):
    model: str = "Jean-Baptiste/camembert-ner"
    revision: str | None = None
    trust_remote_code: bool = False


class StudentSettings(Section):
    num_layers: int = Field(10, ge=1)
    layers: list[int] | None = Field(None, description="1-based teacher layers to keep; default: spread evenly")
    config: str | None = Field(None, description="build from this config/checkpoint instead of the teacher")
    crf: bool = False


class LossWeights(Section):
    ce: float = Field(1.0, ge=0)
    kd: float = Field(1.0, ge=0)
    hidden: float = Field(0.0, ge=0)
    crf: float = Field(0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            if len(v) != 4:
                raise ValueError("a list of weights must have 4 numbers: [ce, kd, hidden, crf]")
            return dict(zip(("ce", "kd", "hidden", "crf"), v, strict=True))
        return v


class Phase(Section):
    from_epoch: int = Field(1, ge=1)
    weights: LossWeights


class LayerMap(Section):
    teacher: list[int] = Field(default_factory=lambda: [2, 4, 6, 8, 10, 12])
    student: list[int] = Field(default_factory=lambda: [2, 3, 5, 7, 9, 10])

    @model_validator(mode="after")
    def _same_length(self) -> LayerMap:
        if len(self.teacher) != len(self.student):
            raise ValueError(f"teacher has {len(self.teacher)} layers, student {len(self.student)}: lengths differ")
        if any(i < 0 for i in self.teacher + self.student):
            raise ValueError("layer indices must be >= 0 (0 is the embeddings)")
        return self


def _default_phases() -> list[Phase]:
    return [
        Phase(from_epoch=1, weights=LossWeights(ce=1.0, kd=0.5, hidden=0.1, crf=0.1)),
        Phase(from_epoch=2, weights=LossWeights(ce=1.0, kd=1.0, hidden=0.2, crf=0.2)),
    ]


class DistillSettings(Section):
    temperature: float = Field(2.5, gt=0)
    layer_map: LayerMap = Field(default_factory=LayerMap)
    phases: list[Phase] = Field(default_factory=_default_phases, min_length=1)
    unlabeled_ratio: float = Field(
        1.0, ge=0, description="with data.unlabeled: unlabelled texts per gold training window in each epoch "
                               "(round(ratio x gold windows) texts, taken in turn from the set, which is cycled; "
                               "batched like gold, so about `ratio` unlabelled batches per gold batch, more when "
                               "long texts split into several windows); 0 = the set is not used")
    unlabeled_weight: float = Field(1.0, ge=0, description="multiplies the loss of unlabelled batches (their KD "
                                                           "and hidden terms; they have no CE or CRF term)")
    unlabeled_max: int | None = Field(None, ge=1, description="use at most this many texts of data.unlabeled "
                                                               "(the first ones kept; the rest is never read)")
    cache_teacher: bool = Field(False, description="run the teacher once over the unlabelled windows and reuse "
                                                   "its outputs every epoch")

    @model_validator(mode="after")
    def _phases_sorted(self) -> DistillSettings:
        starts = [p.from_epoch for p in self.phases]
        if starts != sorted(set(starts)) or starts[0] != 1:
            raise ValueError(f"phases must start at epoch 1 and be strictly increasing, got {starts}")
        return self

    def weights_for_epoch(self, epoch: int) -> LossWeights:
        """Weights of the phase in force at 1-based ``epoch``."""
        current = self.phases[0].weights
        for phase in self.phases:
            if epoch >= phase.from_epoch:
                current = phase.weights
        return current


class TrainSettings(Section):
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-5, gt=0, lt=1)
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    clip_grad: float = Field(1.0, ge=0)
    grad_accum: int = Field(1, ge=1)
    precision: Precision = "auto"
    device: Device = "auto"
    seed: int = 42
    patience: int = Field(3, ge=0, description="epochs without dev F1 gain before stopping; 0 = never")
    compile: bool = False
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(
        0, ge=0, description="also save the resumable state every N optimiser steps; 0 = at epoch ends only")


class PruneSettings(Section):
    rate: float = Field(0.25, ge=0, lt=1)
    per_layer: dict[int, int] | None = Field(None, description="heads to remove per 0-based layer")
    normalize: bool = True
    allow_empty_layers: bool = False
    max_sentences: int | None = Field(1000, ge=1)


class FinetuneSettings(Section):
    epochs: int = Field(2, ge=1)
    lr: float = Field(5e-5, gt=0, lt=1)
    crf: bool = False
    teacher: str | None = None


class InferSettings(Section):
    batch_size: int | None = Field(None, ge=1, description="texts per batch; default 32 on CPU, 256 on GPU")
    max_tokens: int | None = Field(None, ge=0, description="padded sub-words per batch; default 512 on CPU "
                                   "(cache-friendly, measured fastest), no cap on GPU; 0: no cap")
    device: Device = "auto"
    precision: Precision = "auto"
    int8: bool = False
    compile: bool = Field(False, description="torch.compile the encoder (CPU: weights frozen into the graph): "
                                             "faster once compiled (~45 s for CamemBERT-base on 2 cores); big inputs")
    jit: bool = Field(True, description="CPU fp32 torch: run the encoder as a TorchScript trace made at the first "
                                        "batch (same ops, same answers, less Python per call: batch 1 faster; "
                                        "runs eagerly if tracing fails)")
    tokenize: Literal["words", "text"] = Field(
        "words", description="sub-words per French word, as nerkd trains models (words), or of the raw text, as "
                             "the transformers pipeline does (text: ~12% fewer sub-words with SentencePiece, for "
                             "models fine-tuned on raw text only: it costs accuracy on word-trained models)")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="torch, or onnx (ONNX Runtime on CPU) for a folder written by nerkd export --format "
                            "onnx; auto: onnx for such a folder, and on a CPU in fp32 for a model folder with a "
                            "verified fp32 export of its weights inside (<model>/onnx) or beside it (<model>_onnx); "
                            "torch otherwise (one log line says which and why)")


class BenchSettings(Section):
    sentences: int = Field(200, ge=1)
    warmup: int = Field(10, ge=0)
    blocks: int = Field(5, ge=1, description="timing blocks, models taking turns (medians over blocks)")
    rounds: int = Field(3, ge=1, description="times the blocks are timed over (every round's blocks count)")
    batch_size: int | None = Field(None, ge=1, description="texts per batch; default 32 on CPU, 256 on GPU")
    device: Device = "cpu"
    precision: Literal["fp32", "bf16", "int8"] = "fp32"


class ReportSettings(Section):
    """``nerkd report``: what it shows besides the scores."""

    errors_in_context: int = Field(20, ge=0, description="sentences with the most errors shown per model, gold "
                                   "and predicted entities marked (the report holds their text); 0: none")
    seed: int = Field(0, description="the order of sentences with as many errors (errors_in_context)")
    allow_no_shared_labels: bool = Field(False, description="score a model that tags none of the types of the "
                                         "data's entities (an all-zero row) instead of refusing it")


class ServeSettings(Section):
    """``nerkd serve``: the REST API (binding, limits, micro-batching). The model runs with ``infer``'s settings
    (device, precision, int8, backend, ...), so the API answers exactly as ``nerkd infer``."""

    host: str = Field("127.0.0.1", description="address to bind; the default answers this machine only")
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = Field(None, exclude=True, description="bearer token required on /v1/*; also from "
                                    "the environment variable NERKD_SERVE_TOKEN; never written to settings.yaml")
    threads: int | None = Field(None, ge=1, description="torch threads; default: the physical cores that other "
                                                        "processes leave free")
    max_batch_words: int = Field(4096, ge=1, description="words (whitespace-separated) per micro-batch")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="how long a micro-batch waits for more requests")
    max_body_bytes: int = Field(1_000_000, ge=64, description="request body limit (413 above)")
    max_texts: int = Field(256, ge=1, description="texts per request (413 above)")
    max_chars: int = Field(100_000, ge=1, description="characters per text (413 above)")
    max_queue_texts: int = Field(10_000, ge=1, description="texts waiting in the queue before 503 (server busy)")
    access_log: bool = Field(True, description="uvicorn's access log (method, path, status; never bodies nor "
                                               "query strings)")
    drain_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM or Ctrl-C: how long the server may go on "
                                   "answering the requests it holds (new ones get 503 with Retry-After) before "
                                   "it stops")


class ExportSettings(Section):
    """``nerkd export``: an ONNX graph (for ONNX Runtime) or a plain Hugging Face folder."""

    format: Literal["onnx", "hf"] = "onnx"
    int8: bool = Field(False, description="onnx: dynamic int8 quantisation (onnxruntime.quantization)")
    opset: int = Field(18, ge=14, le=23, description="ONNX opset (the dynamo exporter needs 18 or more)")
    exporter: Literal["auto", "torchscript", "dynamo"] = Field(
        "auto", description="torch's exporter: the legacy torchscript tracer (deprecated by torch; its graph runs "
                            "fastest), dynamo (torch.export, needs onnxscript), or auto: torchscript, else dynamo")
    check_sentences: int = Field(200, ge=0, description="sentences of --input, data.dev or data.test on which the "
                                                        "export is checked against the model (and int8 against fp32)")
    after_train: Literal["none", "onnx"] = Field(
        "none", description="onnx: nerkd finetune (recovery, not --base) and nerkd prune end by writing the model's "
                            "fp32 ONNX export into the run folder (<output>/onnx), checked as nerkd export checks it; "
                            "nerkd infer, serve and bench then run the model on ONNX Runtime on a CPU (same answers, "
                            "faster)")


class RedactPattern(Section):
    label: str = Field(description="the label of what the regex finds, e.g. IPP")
    regex: str = Field(description="a Python regular expression; the whole match is replaced, or only its group "
                                    "named id when it has one: 'IPP\\s*(?P<id>\\d{8})'")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        _check_type(v)
        return v

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        import re

        try:
            compiled = re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e})") from None
        if compiled.fullmatch(""):
            raise ValueError("the regular expression matches the empty string")
        return v


class RedactSettings(Section):
    """``nerkd redact``: how notes are pseudonymised (README "Pseudonymise your notes"). The model runs with
    ``infer``'s settings (device, precision, backend, ...)."""

    mode: Literal["placeholder", "mask", "surrogate"] = Field(
        "placeholder", description="placeholder: [PER_1], [LOC_2] (numbered per document, the same value the same "
                                   "number); mask: one fixed token per label ([PER]); surrogate: realistic French "
                                   "fake values of the same kind and case shape")
    bias: float = Field(2.0, ge=-20, le=20, description="logit offset against O when decoding (softmax and CRF "
                        "heads): a word stays O only when O beats every entity tag by more than this; >0 favours "
                        "recall (a leak is worse than an over-redaction); pick it with report --redact")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-label minimum entity score, e.g. "
                                         "{ORG: 0.3}; model entities scoring below are kept as text (default: none)")
    dates: Literal["keep", "redact", "shift"] = Field(
        "shift", description="dates found by rules: keep them, redact them as any entity, or shift them by a "
                             "per-document (or, with a key, per-key) number of days, format kept")
    shift_days: int = Field(365, ge=1, le=36500, description="dates: shift moves dates by 1..shift_days days, "
                                                             "forwards or backwards")
    rules: bool = Field(True, description="find identifiers by rules: phones, e-mails, URLs, NIR, IBAN, "
                                          "SIREN/SIRET, patterns, dates")
    patterns: list[RedactPattern] = Field(default_factory=list, description="local identifiers, e.g. "
                                          "[{label: IPP, regex: 'IPP\\s*\\d{8}'}]")
    keep_labels: list[str] = Field(default_factory=list, description="model labels never replaced, e.g. [MISC]")
    locale: str = Field("fr_FR", description="surrogate values (faker locale) and the phone numbers' region")
    key_file: str | None = Field(None, description="a secret key file: the same value gets the same surrogate "
                                                   "or placeholder code in every document (HMAC-SHA256)")

    @field_validator("keep_labels", mode="before")
    @classmethod
    def _one_label(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for label, value in v.items():
            _check_type(label)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold {label}: {value} is not a score between 0 and 1")
        return v


class SelectSettings(Section):
    """``nerkd select``: which unlabelled notes to annotate next (README "nerkd select")."""

    n: int = Field(200, ge=1, description="notes to choose")
    strategy: Literal["entropy", "margin", "random"] = Field(
        "entropy", description="a word's uncertainty: entropy of its label distribution (over log L), or 1 - the "
                               "margin between its two likeliest labels; random: a seeded random choice (baseline)")
    top_words: int = Field(5, ge=1, description="a note's uncertainty: the mean over its top_words most uncertain "
                                                "words, a shorter note counting its missing words as certain")
    student_weight: float = Field(0.5, ge=0, le=1, description="with --student: score = (1 - w) x uncertainty + "
                                  "w x disagreement (share of words whose entity label differs)")
    dedup: float | None = Field(0.8, gt=0, le=1, description="drop a note whose word-set Jaccard with a better-"
                                "ranked chosen note is at least this; null: keep near-duplicates")
    seed: int = Field(0, description="breaks ties in score (random: the whole order)")


_yaml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("nerkd_yaml", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _yaml_path.get()
        return read_yaml(path) if path else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NERKD_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    paths: PathsSettings = Field(default_factory=PathsSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    student: StudentSettings = Field(default_factory=StudentSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    infer: InferSettings = Field(default_factory=InferSettings)
    bench: BenchSettings = Field(default_factory=BenchSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    redact: RedactSettings = Field(default_factory=RedactSettings)
    select: SelectSettings = Field(default_factory=SelectSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def save(self, folder: str | Path, name: str = "settings.yaml") -> Path:
        """Write the resolved settings into a run folder (atomically)."""
        from nerkd.io import atomic_write_text

        return atomic_write_text(Path(folder) / name, self.to_yaml())


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise SettingsError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = _yaml_mark(e)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SettingsError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    return data


def _yaml_mark(e: yaml.YAMLError):
    """Where a YAML error is. PyYAML notices an unclosed bracket or quote, or a key without its colon, on a
    later line (where it stopped): then the error is where that construct starts (its context mark)."""
    context = getattr(e, "context", None) or ""
    start = getattr(e, "context_mark", None)
    if start is not None and context.startswith(("while scanning", "while parsing a flow")):
        return start
    return getattr(e, "problem_mark", None)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-4", "data.limit=10"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set {pair!r}: expected section.key=value")
        parts = key.strip().split(".")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"--set {pair!r}: {part} is both a value and a section")
        node[parts[-1]] = parsed
    return out


def _has_path(data: Any, loc: tuple) -> bool:
    node = data
    for part in loc:
        if isinstance(node, dict) and (part in node or str(part) in node):
            node = node[part] if part in node else node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def _source_of(loc: tuple, overrides: dict, yaml_path: Path | None) -> str:
    if _has_path(overrides, loc):
        return "--set"
    env_name = "NERKD_" + "__".join(str(p).upper() for p in loc if not isinstance(p, int))
    if any(k.upper().startswith(env_name) for k in os.environ):
        return f"environment ({env_name})"
    if yaml_path is not None:
        try:
            if _has_path(read_yaml(yaml_path), loc):
                return str(yaml_path)
        except SettingsError:
            pass
    return "defaults"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside a field's type (``LayerMap``, ``list[Phase]`` -> ``Phase``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def _keys_at(loc: tuple) -> list[str]:
    """The keys allowed beside ``loc``'s last part (the sections, at the top level)."""
    model: type[BaseModel] | None = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue    # an item of a list of sections (distill.phases.0)
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _section_model(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields)


def all_settings() -> list[tuple[str, str]]:
    """Every ``(section, key)`` of the settings, in their order."""
    return [(section, key) for section, field in Settings.model_fields.items()
            for key in (_section_model(field.annotation) or BaseModel).model_fields]


def _did_you_mean(loc: tuple, where: str) -> str:
    """``; did you mean train.lr?`` for an unknown key: a close key of the same section, else the same key in
    another section (``train.temperature`` -> ``distill.temperature``); in the environment's spelling there."""
    import difflib

    name = str(loc[-1])
    close = difflib.get_close_matches(name, _keys_at(loc), n=1, cutoff=0.6)
    if close:
        better = (*loc[:-1], close[0])
    else:
        elsewhere = [(s, k) for s, k in all_settings() if k == name] if len(loc) == 2 else []
        if not elsewhere:
            return ""
        better = elsewhere[0]
    dotted = ".".join(str(p) for p in better)
    if where.startswith("environment"):
        return f"; did you mean {dotted} (NERKD_{'__'.join(str(p).upper() for p in better)})?"
    return f"; did you mean {dotted}?"


# where a command looks first for a setting named like an option it does not have (``distill --epochs``:
# train.epochs; ``finetune --epochs``: finetune.epochs)
_COMMAND_SECTIONS = {
    "distill": ("distill", "train", "student", "teacher", "data", "labels"),
    "finetune": ("finetune", "train", "data", "labels"), "prune": ("prune", "data", "train"),
    "validate": ("data", "train", "teacher"), "infer": ("infer", "data"), "bench": ("bench", "infer"),
    "serve": ("serve", "infer"), "export": ("export", "infer"), "report": ("report", "infer", "data"),
}


def settings_named(option: str, command: str | None = None) -> list[str]:
    """The settings (``section.key``) an unknown command-line option may mean: ``--epochs`` ->
    ``train.epochs, finetune.epochs`` (the command's own sections first), ``--train-epochs`` ->
    ``train.epochs``, a near miss (``--epoch``) -> the closest key."""
    import difflib

    name = option.lstrip("-").replace("-", "_")
    pairs = all_settings()
    found = [(s, k) for s, k in pairs if k == name or f"{s}_{k}" == name or f"{s}.{k}" == name]
    if not found:
        close = difflib.get_close_matches(name, sorted({k for _, k in pairs}), n=1, cutoff=0.8)
        found = [(s, k) for s, k in pairs if k in close]
    order = _COMMAND_SECTIONS.get(command or "", ())
    found.sort(key=lambda p: order.index(p[0]) if p[0] in order else len(order))
    return [f"{s}.{k}" for s, k in found]


def setting_type(dotted: str) -> Any:
    """The type of a ``section.key`` setting (``bool`` for ``train.compile``)."""
    section, key = dotted.split(".", 1)
    return _section_model(Settings.model_fields[section].annotation).model_fields[key].annotation


DATA_FILES = ("train", "dev", "test", "label2id", "unlabeled")


def check_data_files(data: DataSettings, names: tuple[str, ...] = DATA_FILES) -> None:
    """A one-line :class:`SettingsError` naming the setting (``data.train``) of the first file among
    ``names`` that is set but does not exist."""
    for name in names:
        value = getattr(data, name, None)
        if value and not Path(value).exists():
            raise SettingsError(f"data.{name}: {value}: no such file or folder")


def _describe(err: dict, where: str = "") -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(tuple(err["loc"]), where)
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], dict):
        return f"{msg} (got {err['input']!r})"
    return msg


def load_settings(config: str | Path | None = None, overrides: list[str] | None = None) -> Settings:
    """Resolve settings from defaults, a YAML file, the environment and ``--set`` pairs."""
    path = Path(config) if config is not None else None
    if path is not None:
        read_yaml(path)  # fail early, with the file's own message, on a missing or broken file
    override_dict = parse_overrides(overrides)
    token = _yaml_path.set(path)
    try:
        return Settings(**override_dict)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        where = _source_of(loc, override_dict, path)
        more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise SettingsError(f"{where}: setting {key}: {_describe(first, where)}{more}") from None
    finally:
        _yaml_path.reset(token)
