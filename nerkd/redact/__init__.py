"""Pseudonymisation: replace the entities a model finds and the identifiers rules find, consistently.

Library only (no CLI, no printing); ``nerkd redact`` (:mod:`nerkd.stages.redact`), ``report``'s leak
metrics and ``serve``'s ``/v1/redact`` use it. The API (stable):

``Span(start, end, label, source="model"|"rule", score=None)``
    A character span of the original text to replace (frozen dataclass).
``find_identifiers(text, settings) -> list[Span]`` (:mod:`nerkd.redact.rules`)
    Rule spans (``source="rule"``): PHONE, EMAIL, URL, NIR, IBAN, SIREN, SIRET (check keys validated by
    ``phonenumbers`` / ``python-stdnum``), DATE (unless ``settings.dates == "keep"``) and the labels of
    ``settings.patterns``; non-overlapping, sorted. ``settings`` is a :class:`nerkd.settings.RedactSettings`.
``model_spans(entities, thresholds=None, keep_labels=()) -> list[Span]``
    Spans of ``nerkd infer``'s entity dicts (``{start, end, label, text, score}``), per-label thresholds applied.
``merge_spans(model_spans, rule_spans, text=None) -> list[Span]``
    Non-overlapping, sorted, covering every character an input span covers: overlaps within a source go to the
    longest span; the characters of a rule span keep the rule's label (a model span overlapping it keeps only
    its parts outside it).
``Redactor(settings, key=None, *, seed=None)``
    ``.redact(text, entities) -> RedactResult``; ``.spans(text, entities) -> list[Span]`` (what would be
    replaced). ``key`` (bytes, >= 16): HMAC-SHA256 key for consistency across documents; without it
    surrogates and placeholder numbers are consistent within a document only, and drawn at random (a per-run
    seed from the system, or ``seed``), never from an unkeyed hash of the value.
``RedactResult``
    ``.text`` (redacted), ``.replacements`` (``[{start, end, label, source}]``, offsets in the redacted text),
    ``.mapping`` (``[{start, end, label, original, replacement}]``, offsets in the redacted text: personal
    data, keep apart), ``.to_json() -> {"text", "replacements"}`` (the caller adds ``id``), ``.counts()`` ->
    ``{(label, source): n}``.
``restore(redacted_text, mapping) -> str``
    The original text, byte-identical, from a result's ``mapping`` (or a mapping-file line ``{"mapping": [...]}``);
    :class:`RestoreError` when the text does not hold the mapping's replacements.

Modes (``redact.mode``): ``placeholder`` (``[PER_1]``, ``[LOC_2]``: numbered per document and label in order
of appearance, one number per value; with a key, ``[PER_3f9a2c1b]``: 8 hex digits of the keyed hash, the same
in every document), ``mask`` (``[PER]``, one fixed token per label), ``surrogate`` (:mod:`nerkd.redact.surrogates`).
Dates: ``redact.dates`` ``shift`` (every mode: moved by the document's shift, format kept), ``redact``
(replaced as any label; in surrogate mode shifted), ``keep`` (not looked for). People: ``Nadia Durand``,
``Mme Durand``, ``Durand``, ``Mme D.`` in one document are one person (:func:`nerkd.redact.normalise.group_people`)
and get one placeholder number, or one surrogate name whose parts and initial the partial mentions reuse.
"""

from nerkd.redact.mapping import RestoreError, restore
from nerkd.redact.redactor import Redactor, RedactResult
from nerkd.redact.rules import find_identifiers
from nerkd.redact.spans import Span, merge_spans, model_spans

__all__ = ["RedactResult", "Redactor", "RestoreError", "Span", "find_identifiers", "merge_spans", "model_spans",
           "restore"]
