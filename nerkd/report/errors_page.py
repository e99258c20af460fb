"""The report's "Errors in context" section as Markdown, HTML and JSON (:mod:`nerkd.report.errors` has
the data). Sentences are the user's own text: escaped for HTML, fenced for Markdown, never logged."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from nerkd.report.errors import ErrorRecord, ErrorsSection, SentenceErrors, Span

TITLE = "Errors in context"
CONFUSION_TITLE = "Confusion (errors by type and boundary)"
# displaCy-like background colours, given to the data's types in their sorted order
PALETTE = ["#7aecec", "#feca74", "#aa9cfc", "#bfeeb7", "#ff9561", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197",
           "#bfe1d9", "#e4e7d2", "#f0d0ff"]
LEGEND = [
    "Errors in context: for each model, the sentences of the scored file with the most errors (ties in a "
    "seeded order; `report.errors_in_context` sentences, 0 for none; `report.seed`), gold entities above the "
    "model's, one colour per type. Marked: missed (a gold entity with no prediction), spurious (a prediction "
    "with no gold entity), `LOC→ORG` (right borders, wrong type), `ORG too short` / `too long` / `shifted` "
    "(right type, wrong borders); an entity without a mark is right.",
    "Confusion: every wrong entity counted once per row; overlapping gold and predicted entities are paired "
    "(largest overlap first), so the counts of a row add up to seqeval's false negatives (records with a gold "
    "entity) and false positives (records with a predicted one).",
]
CSS = """
.sent{border:1px solid #e5e7eb;border-radius:4px;padding:.4rem .6rem;margin:.5rem 0}
.where{color:#555;font-size:.85rem}.side{display:inline-block;width:2.6rem;color:#777;font-size:.8rem}
.ln{line-height:2.3}.ent{padding:.1rem .3rem;border-radius:.3rem;margin:0 .1rem}
.lb{font-size:.7rem;font-weight:700;margin-left:.3rem;text-transform:uppercase}
.eb{font-size:.7rem;font-weight:700;margin-left:.3rem;color:#fff;background:#b91c1c;padding:0 .25rem;
border-radius:.2rem}.e-bd .eb{background:#b45309}
.e-ms{outline:2px dashed #b91c1c}.e-sp{outline:2px dotted #b91c1c}.e-ty{outline:2px solid #b91c1c}
.e-bd{outline:2px solid #b45309}
"""
_CLASS = {"missed": "e-ms", "spurious": "e-sp", "wrong_type": "e-ty", "boundary": "e-bd", "type_boundary": "e-ty"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def colours(types: Sequence[str]) -> dict[str, str]:
    return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(sorted(types))}


def _marks(sent: SentenceErrors, side: str) -> dict[Span, ErrorRecord]:
    """Each span of ``side`` (gold or pred) that is in an error record -> that record."""
    return {getattr(r, side): r for r in sent.errors if getattr(r, side) is not None}


def _short(record: ErrorRecord) -> str:
    """The mark an entity carries: its record's label, less the type already shown beside it."""
    if record.kind in ("missed", "spurious"):
        return record.kind
    return record.label.split(" ", 1)[1] if record.kind == "boundary" else record.label


# -- HTML ------------------------------------------------------------------------------------

def _html_line(tokens: Sequence[str], spans: Sequence[Span], marks: dict[Span, ErrorRecord],
               colour: dict[str, str]) -> str:
    starts = {s[1]: s for s in spans}
    out, i = [], 0
    while i < len(tokens):
        span = starts.get(i)
        if span is None:
            out.append(_e(tokens[i]))
            i += 1
            continue
        etype, start, end = span
        record = marks.get(tuple(span))
        cls = f"ent {_CLASS[record.kind]}" if record else "ent"
        badge = f'<span class="eb">{_e(_short(record))}</span>' if record else ""
        out.append(f'<mark class="{cls}" style="background:{colour.get(etype, "#ddd")}">'
                   f'{_e(" ".join(tokens[start:end]))}<span class="lb">{_e(etype)}</span>{badge}</mark>')
        i = max(end, i + 1)
    return " ".join(out)


def _html_sentence(sent: SentenceErrors, colour: dict[str, str]) -> str:
    n = len(sent.errors)
    lines = [f'<div class="where">{_e(sent.source)} line {sent.line} · {n} error{"s" if n != 1 else ""}</div>']
    for side, spans in (("gold", sent.gold), ("pred", sent.pred)):
        lines.append(f'<div class="ln"><span class="side">{side}</span>'
                     f"{_html_line(sent.tokens, spans, _marks(sent, side), colour)}</div>")
    return '<div class="sent">' + "".join(lines) + "</div>"


def html_section(section: ErrorsSection, types: Sequence[str]) -> list[str]:
    """The section's sentences (the caller adds the heading and the confusion table)."""
    colour = colours(types)
    parts = []
    if section.sentences <= 0:
        return ["<p>No sentence shown (<code>report.errors_in_context: 0</code>).</p>"]
    for m in section.models:
        if not m.sampled:
            continue
        parts.append(f"<h3>{_e(m.name)}: {len(m.shown)} of {m.sentences_with_errors} sentences with errors</h3>")
        parts += [_html_sentence(s, colour) for s in m.shown]
    return parts


# -- Markdown --------------------------------------------------------------------------------

def _md_line(tokens: Sequence[str], spans: Sequence[Span], marks: dict[Span, ErrorRecord]) -> str:
    starts = {s[1]: s for s in spans}
    out, i = [], 0
    while i < len(tokens):
        span = starts.get(i)
        if span is None:
            out.append(tokens[i])
            i += 1
            continue
        etype, start, end = span
        record = marks.get(tuple(span))
        mark = f" !{_short(record)}" if record else ""
        out.append(f"[{' '.join(tokens[start:end])}]({etype}{mark})")
        i = max(end, i + 1)
    return " ".join(out)


def _text(tokens: Sequence[str], span: Span | None) -> str:
    return "" if span is None else " ".join(tokens[span[1]:span[2]])


def _md_sentence(sent: SentenceErrors) -> list[str]:
    n = len(sent.errors)
    body = [f"{sent.source} line {sent.line}: {n} error{'s' if n != 1 else ''}",
            "gold  " + _md_line(sent.tokens, sent.gold, _marks(sent, "gold")),
            "pred  " + _md_line(sent.tokens, sent.pred, _marks(sent, "pred"))]
    for r in sent.errors:
        texts = [t for t in (_text(sent.tokens, r.gold), _text(sent.tokens, r.pred)) if t]
        what = " → ".join(dict.fromkeys(texts))  # once when both borders are the same
        body.append(f"  - {r.label}: {what}")
    ticks = max((len(run) for run in re.findall(r"`+", "\n".join(body))), default=0)
    fence = "`" * max(3, ticks + 1)  # a fence longer than any backtick run of the text
    return [fence + "text", *body, fence, ""]


def markdown_section(section: ErrorsSection) -> list[str]:
    """The section's sentences as fenced blocks: ``[words](TYPE !mark)``, gold line above the model's."""
    if section.sentences <= 0:
        return ["No sentence shown (`report.errors_in_context: 0`).", ""]
    parts = []
    for m in section.models:
        if m.sampled:
            parts += [f"### {m.name}: {len(m.shown)} of {m.sentences_with_errors} sentences with errors", ""]
            for s in m.shown:
                parts += _md_sentence(s)
    return parts


# -- tables and JSON -------------------------------------------------------------------------

def confusion_columns(section: ErrorsSection) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the confusion table: one row per error label (most frequent over all models
    first), one column per model, and a total row."""
    totals: dict[str, int] = {}
    for m in section.models:
        for label, n in m.confusion.items():
            totals[label] = totals.get(label, 0) + n
    labels = sorted(totals, key=lambda lab: (-totals[lab], lab))
    rows = [[lab, *(str(m.confusion.get(lab, 0)) for m in section.models)] for lab in labels]
    rows.append(["all errors", *(str(sum(m.confusion.values())) for m in section.models)])
    return ["error", *(m.name for m in section.models)], rows


def as_json(section: ErrorsSection) -> dict:
    """``errors_in_context`` (settings and each sampled model's sentences) and ``confusion`` (per model:
    counts by label and by kind, sentences with errors)."""
    return {
        "errors_in_context": {"sentences": section.sentences, "seed": section.seed,
                              "models": {m.name: [s.as_dict() for s in m.shown] for m in section.models
                                         if m.sampled}},
        "confusion": {m.name: {"by_label": m.confusion, "by_kind": m.kinds,
                               "sentences_with_errors": m.sentences_with_errors} for m in section.models},
    }
