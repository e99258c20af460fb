"""``nerkd report --redact``: the leak metrics (:mod:`nerkd.report.leaks`) of the redaction ``nerkd redact``
would make with each model, on the gold file's texts.

Each gold line is one document: its text (a character-span file's own text; for token files, the tokens
joined by single spaces) and its gold spans (from its tags, so ``labels.drop`` / ``labels.map`` apply). The
texts go through the model's engine (``engine.predict``: the words, windows and decoding of ``nerkd infer``
and ``nerkd redact``) once per bias: ``redact.bias`` and each value of the sweep, set as the engine's
``entity_bias`` (a logit offset against ``O``). The entities become the spans ``nerkd redact`` replaces
(:func:`nerkd.redact.spans.model_spans` with ``redact.thresholds`` and ``redact.keep_labels``), merged
alone (**model**) or with the identifiers found by rules (**model + rules**:
:func:`nerkd.redact.rules.find_identifiers` with the ``redact`` settings,
:func:`nerkd.redact.spans.merge_spans`: what :meth:`nerkd.redact.Redactor.spans` replaces), and scored
against the gold spans.

Gold labels no model knows (PHONE, NIR, a pattern's label...) are scored like the others: the model alone
covers them only by chance, the rules are there for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nerkd.data.schemes import spans_of
from nerkd.redact.spans import Span as RedactSpan
from nerkd.redact.spans import merge_spans, model_spans
from nerkd.report.leaks import LeakScore, Span, leak_score

if TYPE_CHECKING:
    from nerkd.report.evaluate import GoldData
    from nerkd.report.runtimes import Run
    from nerkd.settings import RedactSettings

SWEEP = (0.0, 1.0, 2.0, 3.0, 4.0)   # the biases of the sweep (redact.bias is added when it is not one of them)
CHUNK = 256                         # texts per predict call (progress granularity)


@dataclass
class GoldDoc:
    text: str
    gold: list[Span]


@dataclass
class BiasPoint:
    """The leak metrics of one model at one bias: the model's spans alone, and merged with the rules' spans."""

    bias: float
    model: LeakScore
    combined: LeakScore


@dataclass
class ModelRedaction:
    name: str
    bias: float                              # redact.bias: the point shown in the per-label table
    points: list[BiasPoint] = field(default_factory=list)   # by bias, the sweep and redact.bias

    @property
    def at_bias(self) -> BiasPoint:
        return next(p for p in self.points if p.bias == self.bias)


@dataclass
class RedactionSection:
    """What the report shows about redaction: one :class:`ModelRedaction` per model, and how it was measured."""

    models: list[ModelRedaction]
    documents: int
    bias: float
    sweep: list[float]
    rules: bool                      # redact.rules
    dates: str                       # redact.dates (keep: DATE is not found by rules)
    thresholds: dict[str, float]
    gold_labels: list[str]           # labels with gold characters, in the gold file's order of types
    rule_labels: list[str]           # of which the rules find (their own labels and redact.patterns')

    def as_dict(self) -> dict:
        return {
            "documents": self.documents, "bias": self.bias, "sweep": self.sweep, "rules": self.rules,
            "dates": self.dates, "thresholds": self.thresholds, "gold_labels": self.gold_labels,
            "rule_labels": self.rule_labels, "unit": "non-space characters",
            "models": [{"name": m.name, "bias": m.bias,
                        "model": m.at_bias.model.as_dict(), "model_rules": m.at_bias.combined.as_dict(),
                        "sweep": [{"bias": p.bias, "model": p.model.as_dict(), "model_rules": p.combined.as_dict()}
                                  for p in m.points]} for m in self.models],
        }


def gold_docs(gold: GoldData) -> list[GoldDoc]:
    """Each gold sentence as a text and its entity spans in characters (see the module doc)."""
    docs = []
    for sent in gold.split.sentences:
        text, offsets = sent.text, sent.offsets
        if text is None or offsets is None:
            offsets, at = [], 0
            for token in sent.tokens:
                offsets.append((at, at + len(token)))
                at += len(token) + 1
            text = " ".join(sent.tokens)
        docs.append(GoldDoc(text, [(offsets[s][0], offsets[e - 1][1], t) for t, s, e in spans_of(sent.tags)]))
    return docs


def rule_labels(settings: RedactSettings) -> set[str]:
    """The labels the rules can give: the built-in identifiers and the patterns' own labels."""
    from nerkd.redact.rules import RULE_LABELS

    return set(RULE_LABELS) | {p.label for p in settings.patterns}


def wanted(gold: GoldData, settings: RedactSettings) -> bool:
    """Whether the gold file has a label the rules find (then the report measures redaction unasked)."""
    return bool(set(gold.types) & rule_labels(settings))


def _replaced(text: str, entities: list[dict], rules: list[RedactSpan], settings: RedactSettings
              ) -> tuple[list[Span], list[Span]]:
    """The spans replaced by the model alone and by the model with the rules, as ``(start, end, label)``: those
    of :meth:`nerkd.redact.Redactor.spans`, the rules' spans found once per text for every bias."""
    mine = model_spans(entities, settings.thresholds, settings.keep_labels)
    alone = merge_spans(mine, [], text)
    both = merge_spans(mine, rules, text)
    return [(s.start, s.end, s.label) for s in alone], [(s.start, s.end, s.label) for s in both]


def _predict(engine, texts: list[str], bias: float, advance: Callable[[int], None] | None) -> list[list[dict]]:
    before = engine.entity_bias
    engine.entity_bias = bias
    try:
        out: list[list[dict]] = []
        for base in range(0, len(texts), CHUNK):
            chunk = texts[base: base + CHUNK]
            out += engine.predict(chunk)
            if advance is not None:
                advance(len(chunk))
        return out
    finally:
        engine.entity_bias = before


def biases(settings: RedactSettings, sweep: Sequence[float] = SWEEP) -> list[float]:
    return sorted({float(b) for b in sweep} | {float(settings.bias)})


def measure_model(name: str, engine, docs: list[GoldDoc], settings: RedactSettings, *,
                  sweep: Sequence[float] = SWEEP, advance: Callable[[int], None] | None = None) -> ModelRedaction:
    """The leak metrics of ``engine``'s redaction of ``docs`` at each bias (see the module doc)."""
    from nerkd.redact.rules import find_identifiers

    texts = [d.text for d in docs]
    rules = [find_identifiers(t, settings) for t in texts]
    result = ModelRedaction(name, float(settings.bias))
    for bias in biases(settings, sweep):
        alone, both = [], []
        for doc, ents, found in zip(docs, _predict(engine, texts, bias, advance), rules, strict=True):
            a, b = _replaced(doc.text, ents, found, settings)
            alone.append((doc.text, doc.gold, a))
            both.append((doc.text, doc.gold, b))
        result.points.append(BiasPoint(bias, leak_score(alone), leak_score(both)))
    return result


def section(models: list[ModelRedaction], docs: list[GoldDoc], gold: GoldData, settings: RedactSettings,
            sweep: Sequence[float] = SWEEP) -> RedactionSection:
    present = {label for d in docs for _, _, label in d.gold}
    labels = [t for t in gold.types if t in present] + sorted(present - set(gold.types))
    found = rule_labels(settings) if settings.rules else set()
    if settings.dates == "keep":
        found.discard("DATE")
    return RedactionSection(models, len(docs), float(settings.bias), biases(settings, sweep), settings.rules,
                            settings.dates, dict(settings.thresholds), labels, [t for t in labels if t in found])


def measure(runs: Sequence[Run], gold: GoldData, settings: RedactSettings, engine_of: Callable[[Run], Any], *,
            asked: bool, notes: list[str], sweep: Sequence[float] = SWEEP) -> RedactionSection | None:
    """The redaction section of a report, or None: not ``asked`` (``--redact``) and no gold label that the
    rules find, or rules without their extra when not asked (a note says so). Each model's own row (``runs``
    whose ``base`` is set) is loaded again by ``engine_of`` and measured at every bias."""
    from nerkd.errors import MissingExtraError
    from nerkd.log import progress
    from nerkd.redact.rules import require_rules

    if not asked and not wanted(gold, settings):
        return None
    if settings.rules:
        try:
            require_rules()
        except MissingExtraError as e:
            if asked:
                raise
            notes.append(f"no redaction section: {e}")
            return None
    docs = gold_docs(gold)
    base = [r for r in runs if r.base]
    models = []
    with progress() as bar:
        task = bar.add_task("redaction", total=len(base) * len(biases(settings, sweep)) * len(docs), info="")
        for run in base:
            bar.update(task, info=run.name)
            engine = engine_of(run)
            models.append(measure_model(run.name, engine, docs, settings, sweep=sweep,
                                        advance=lambda n: bar.advance(task, n)))
            del engine
    return section(models, docs, gold, settings, sweep)
