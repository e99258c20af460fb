"""Score saved models on one labelled file, in the data's own label space.

A model may tag in another scheme (camembert-ner is IO, domain data is usually BIO) or know
types the data does not have (MISC). Predictions are therefore re-expressed on the data side
before scoring: entity spans are read from the model's tags, renamed with ``labels.rename``,
spans of a type absent from the gold label set are dropped (and counted per type: they are not
counted as false positives), and the rest are written back in the data's scheme. Gold types the
model cannot tag simply get recall 0.

Models are run by the engine of ``nerkd infer`` (:class:`nerkd.infer.Engine`, loaded by the stage):
the same windows, batches and decoding whatever the runtime (torch fp32, bf16, int8, ONNX Runtime).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.data.dataset import Split, label_space_for, read_split
from nerkd.data.schemes import entity_types, spans_of, tags_from_spans
from nerkd.errors import DataError, NerkdError
from nerkd.metrics import evaluate
from nerkd.report.runtimes import Runtime

CHUNK = 256  # sentences per prediction call (progress granularity)


@dataclass
class GoldData:
    path: str
    split: Split
    types: list[str]          # gold label set (data.label2id if set, plus the types seen)
    scheme: str               # the data's scheme (predictions are converted to it)

    @property
    def sentences(self) -> int:
        return len(self.split.sentences)

    @property
    def words(self) -> int:
        return sum(len(s.tokens) for s in self.split.sentences)

    @property
    def gold_tags(self) -> list[list[str]]:
        return self.split.gold_tags

    def present_types(self) -> set[str]:
        """The types of the entities the file holds (``types`` may also name those of data.label2id)."""
        return {t for tags in self.gold_tags for t, _, _ in spans_of(tags)}

    def support(self) -> dict[str, int]:
        counts: Counter = Counter()
        for tags in self.gold_tags:
            counts.update(t for t, _, _ in spans_of(tags))
        return {t: counts.get(t, 0) for t in self.types}


@dataclass
class ModelScore:
    name: str
    path: str
    runtime: Runtime = field(default_factory=Runtime)   # how the model ran (torch fp32, int8, onnx...)
    labels: list[str] = field(default_factory=list)
    scheme: str = ""
    scores: dict = field(default_factory=dict)          # metrics.evaluate() result
    dropped: dict[str, int] = field(default_factory=dict)  # predicted spans of types absent from gold
    renamed: dict[str, str] = field(default_factory=dict)
    missing_types: list[str] = field(default_factory=list)  # gold types the model cannot tag
    parameters: int = 0
    disk_bytes: int | None = None
    heads: list[int] = field(default_factory=list)
    pruned: bool = False                  # fewer heads than the config says (pruned layout)
    encoded: str = ""
    predictions: list[list[str]] = field(default_factory=list, repr=False)


class NoSharedTypes(NerkdError):
    """A model tags none of the data's entity types: its scores would be an all-zero table."""


def load_gold(path: str | Path, data_settings, label_settings=None) -> GoldData:
    """The labelled file; ``label_settings`` applies ``labels.drop`` / ``labels.map`` to it."""
    split = read_split("report", path, data_settings, label_settings)
    if not split.sentences:
        raise DataError(path, None, "no sentence to evaluate on")
    space = label_space_for([split], data_settings)
    types = sorted(set(space.types) | set(entity_types(split.read.tags)))
    return GoldData(str(path), split, types, space.scheme)


def align_tags(tags: Sequence[str], gold_types: set[str] | Sequence[str], scheme: str,
               rename: Mapping[str, str] | None = None) -> tuple[list[str], Counter]:
    """Model tags -> tags in ``scheme`` over ``gold_types``; returns ``(tags, dropped spans per type)``.

    A model type not in the gold set is renamed with ``rename`` (``labels.rename``) when that lands
    on a gold type, else its spans are dropped and counted.
    """
    gold_types = set(gold_types)
    rename = rename or {}
    kept, dropped = [], Counter()
    for etype, start, end in spans_of(tags):
        target = etype if etype in gold_types else rename.get(etype, etype)
        if target in gold_types:
            kept.append((target, start, end))
        else:
            dropped[etype] += 1
    return tags_from_spans(len(tags), kept, scheme), dropped


WEIGHT_FILES = ("*.safetensors", "*.onnx", "*.onnx.data")


def weights_bytes(folder: str | Path) -> int | None:
    """Size of the weight files (safetensors; ``model.onnx`` of an ONNX export) of a model folder; None if
    not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for pattern in WEIGHT_FILES for p in folder.glob(pattern) if p.is_file())


def score_model(name: str, path: str, engine, gold: GoldData, rename: Mapping[str, str], *,
                runtime: Runtime | None = None, advance: Callable[[int], None] | None = None,
                allow_no_shared: bool = False) -> ModelScore:
    """Tag every gold sentence with ``engine`` (a loaded :class:`nerkd.infer.Engine`, the front end of
    ``nerkd infer``: windows, batches, decoding), align to the data's labels and score.

    ``rename``: ``labels.rename``; ``runtime``: how ``engine`` runs the model (recorded with the scores).
    A model that tags none of the types of the file's entities (its row would be all zeros) is refused
    (:class:`NoSharedTypes`) unless ``allow_no_shared`` (``report.allow_no_shared_labels``)."""
    space = engine.space
    model_types = set(space.types)
    renamed = {k: v for k, v in rename.items() if k in model_types and k not in gold.types and v in gold.types}
    reachable = {renamed.get(t, t) for t in model_types}
    present = gold.present_types()   # not data.label2id's types: a type no entity has scores nothing
    if not reachable & present and not allow_no_shared:  # before any prediction: an all-zero table says nothing
        raise NoSharedTypes(f"report: model {name} ({path}) shares no entity type with {gold.path}: model types "
                            f"{', '.join(sorted(model_types)) or 'none'}, data types "
                            f"{', '.join(sorted(present)) or 'none'}; map model types to data types with "
                            "labels.rename, or data types with labels.map (--allow-no-shared-labels: score it anyway)")
    model = engine.model
    result = ModelScore(name=name, path=str(path), runtime=runtime or Runtime(), labels=list(space.labels),
                        scheme=space.scheme, parameters=int(engine.num_parameters), disk_bytes=weights_bytes(path),
                        heads=list(getattr(model, "heads", None) or []),
                        pruned=bool(getattr(model, "is_pruned", False)))
    words = [s.tokens for s in gold.split.sentences]
    preds: list[list[str]] = []
    for base in range(0, len(words), CHUNK):
        chunk = words[base : base + CHUNK]
        preds += [tags for tags, _ in engine.tag_words(chunk)]
        if advance is not None:
            advance(len(chunk))
    result.encoded = engine.encoded.summary()
    dropped: Counter = Counter()
    aligned = []
    for tags in preds:
        tags2, d = align_tags(tags, gold.types, gold.scheme, rename)
        aligned.append(tags2)
        dropped.update(d)
    result.renamed = renamed
    result.missing_types = [t for t in gold.types if t not in reachable]
    result.dropped = dict(sorted(dropped.items()))
    result.predictions = aligned
    result.scores = evaluate(gold.gold_tags, aligned)
    return result


def read_run_file(folder: str | Path, name: str) -> dict | None:
    """An optional JSON object of a run folder (``train_summary.json``...); None if absent.

    Raises ValueError (with the reason) when the file is there but unreadable.
    """
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({str(e).split(':')[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
