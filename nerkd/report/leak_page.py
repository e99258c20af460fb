"""The report's redaction section (:class:`nerkd.report.redaction.RedactionSection`) as plain strings: its
lines and its tables as ``(title, columns, rows, justify)``, drawn by :mod:`nerkd.report.render` (Markdown, HTML)
and :mod:`nerkd.cli.render` (terminal) like the report's other tables."""

from __future__ import annotations

from nerkd.report.leaks import LeakScore
from nerkd.report.redaction import ModelRedaction, RedactionSection

DASH = "-"
TITLE = "Redaction (leak metrics)"
LABELS_TITLE = "Redaction per label (%)"
SWEEP_TITLE = "Bias sweep (%)"

Table = tuple[str, list[str], list[list[str]], list[str]]   # title, columns, rows, each column's justification


def _pct(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{100 * x:.{digits}f}"


def _docs(n: int, of: int) -> str:
    return DASH if not of else f"{100 * n / of:.1f} ({n}/{of})"


def _over(score: LeakScore, label: str | None = None) -> str:
    if not score.outside_chars:
        return DASH
    n = score.over_chars if label is None else (score.labels[label].over_chars if label in score.labels else 0)
    return _pct(n / score.outside_chars, 2)


def _label_rows(m: ModelRedaction, labels: list[str]) -> list[list[str]]:
    model, both = m.at_bias.model, m.at_bias.combined
    extra = sorted((set(model.labels) | set(both.labels)) - set(labels))   # labels that only over-redact
    rows = []
    for label in [*labels, *extra]:
        a, b = model.labels.get(label), both.labels.get(label)
        chars = (a or b).chars if (a or b) else 0
        rows.append([m.name, label, str(chars) if chars else DASH,
                     _pct(a.recall if a else None), _pct(b.recall if b else None),
                     _docs(a.docs_full, a.docs) if a else DASH, _docs(b.docs_full, b.docs) if b else DASH,
                     _over(model, label), _over(both, label)])
    rows.append([m.name, "all", str(both.chars), _pct(model.recall), _pct(both.recall),
                 _docs(model.docs_full, model.docs), _docs(both.docs_full, both.docs), _over(model), _over(both)])
    return rows


def labels_table(section: RedactionSection) -> Table:
    """Per label and overall, at ``redact.bias``: recall, documents fully redacted and over-redaction, for
    the model alone and the model with the rules."""
    columns = ["model", "label", "gold chars", "recall (model)", "recall (model + rules)",
               "docs fully redacted (model)", "docs fully redacted (model + rules)", "over-redaction (model)",
               "over-redaction (model + rules)"]
    rows = [r for m in section.models for r in _label_rows(m, section.gold_labels)]
    return f"{LABELS_TITLE}, bias {section.bias:g}", columns, rows, ["left", "left"] + ["right"] * (len(columns) - 2)


def sweep_table(section: RedactionSection) -> Table:
    """Per bias: overall recall (model, model + rules), documents fully redacted and over-redaction (model +
    rules), and the recall of each label the rules do not find (what the bias moves)."""
    model_labels = [t for t in section.gold_labels if t not in section.rule_labels]
    columns = ["model", "bias", "recall (model)", "recall (model + rules)", "docs fully redacted (model + rules)",
               "over-redaction (model + rules)", *[f"{t} recall (model + rules)" for t in model_labels]]
    rows = []
    for m in section.models:
        for p in m.points:
            both = p.combined
            mark = " (redact.bias)" if p.bias == section.bias else ""
            rows.append([m.name, f"{p.bias:g}{mark}", _pct(p.model.recall), _pct(both.recall),
                         _docs(both.docs_full, both.docs), _over(both),
                         *[_pct(both.labels[t].recall if t in both.labels else None) for t in model_labels]])
    return SWEEP_TITLE, columns, rows, ["left", "left"] + ["right"] * (len(columns) - 2)


def tables(section: RedactionSection) -> list[Table]:
    return [labels_table(section), sweep_table(section)]


def lines(section: RedactionSection, data_path: str) -> list[str]:
    """What the tables measure, in sentences (Markdown backticks for code)."""
    thresholds = ", ".join(f"{k} {v:g}" for k, v in sorted(section.thresholds.items())) or "none"
    rules = (f"rules on (dates: {section.dates})" if section.rules else "rules off (`redact.rules: false`)")
    others = [t for t in section.gold_labels if t not in section.rule_labels]
    return [
        f"The redaction `nerkd redact` would make with each model on the {section.documents} documents of "
        f"{data_path} (one per line): `redact.bias` {section.bias:g}, thresholds {thresholds}, {rules}. "
        "Counted in non-space characters.",
        "Recall: the share of gold entity characters inside a replacement of any label. Docs fully redacted: "
        "of the documents with a gold entity (per label: with that label), those in which every such character "
        "is replaced. Over-redaction: the share of the characters outside every gold entity that are replaced "
        "(per label: by replacements of that label). A leak is worse than an over-redaction.",
        "model: the model's entities alone; model + rules: merged with the identifiers found by rules"
        + (f" (in this file: {', '.join(section.rule_labels)})" if section.rule_labels else "")
        + (f". Gold labels no rule finds: {', '.join(others)}." if others else "."),
        "Bias sweep: the same texts decoded with each bias (`redact.bias`, a logit offset against O: higher "
        "tags more words as entities); pick the bias on your own held-out notes and set it with "
        "`--set redact.bias=...`.",
    ]
