"""The report as tables of plain strings (:class:`TableData`), then as Markdown, self-contained HTML and
JSON. The terminal's rich tables are drawn from the same tables by :mod:`nerkd.cli.render`."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from nerkd.io import atomic_write_text, write_json
from nerkd.report import errors_page, leak_page
from nerkd.report.records import Report

DASH = "-"


@dataclass
class TableData:
    """A table as plain strings: a title, column headers, rows of cells, each column's justification
    (``"left"`` or ``"right"``; by default the first column left, the figures right)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    justify: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.justify:
            self.justify = ["left"] + ["right"] * (len(self.columns) - 1)

LEGEND = [
    "Scores are entity-level (seqeval, CoNLL-style): an entity counts only when its type and both borders "
    "are right. P = precision, R = recall, F1 in %; `all` is the micro average over every entity.",
    "Predictions are expressed in the data's label set before scoring: types the data does not have "
    "(e.g. MISC of camembert-ner) are dropped, not counted as errors (see Notes).",
    "Size ratios and speed-ups are relative to the first model (usually the teacher); higher is better.",
    "Pareto plot: a model is on the front (red) when no other model is both faster and more accurate.",
]
DELTA_HEADER = "Δ F1 vs fp32"
DELTA_LINE = (f"{DELTA_HEADER}: the row's `all` F1 minus that of the same model run by torch in fp32 (for an ONNX "
              "export: the torch model it was exported from), in points; every row goes through the same words, "
              "windows and decoding (those of `nerkd infer`), so the difference is the runtime's.")


NO_NOTES = "No notes for this report."


def legend(report: Report) -> list[str]:
    lines = [*LEGEND, DELTA_LINE] if report.compares else list(LEGEND)
    return lines + errors_page.LEGEND if report.errors is not None else lines


# -- formatting -----------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}"


def count(n: float | None) -> str:
    if n is None:
        return DASH
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(int(n))


def size(n: float | None) -> str:
    return DASH if n is None else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}x"


def num(x: float | None, fmt: str = ".1f") -> str:
    return DASH if x is None else format(x, fmt)


def span(bench: dict, key: str, fmt: str = ".1f") -> str:
    """``min–max`` of a bench figure over its timing blocks (``-`` when the bench file has none)."""
    lo, hi = bench.get(f"{key}_min"), bench.get(f"{key}_max")
    return DASH if lo is None or hi is None else f"{format(lo, fmt)}–{format(hi, fmt)}"


# -- tables ---------------------------------------------------------------------------------

def delta(x: float | None) -> str:
    """An F1 difference in points, signed, two decimals (``0.00`` when equal)."""
    return DASH if x is None else "0.00" if x == 0 else f"{100 * x:+.2f}"


def entity_table(report: Report) -> TableData:
    """Per-type and overall P/R/F1 per row; when runtimes are compared, the row's runtime after its name
    and, last, its F1 difference with its reference row (:data:`DELTA_LINE`)."""
    types = report.data.types
    lead = ["model", "runtime"] if report.compares else ["model"]
    headers = lead + [f"{t} {m}" for t in [*types, "all"] for m in ("P", "R", "F1")]
    headers += [DELTA_HEADER] if report.compares else []
    rows = []
    for row in report.rows:
        s = row.score.scores
        cells = [row.name, row.score.runtime.label] if report.compares else [row.name]
        for t in types:
            r = s["per_type"].get(t)
            cells += [pct(r["precision"]), pct(r["recall"]), pct(r["f1"])] if r else [DASH] * 3
        cells += [pct(s["precision"]), pct(s["recall"]), pct(s["f1"])]
        cells += [delta(row.f1_delta)] if report.compares else []
        rows.append(cells)
    justify = ["left"] * len(lead) + ["right"] * (len(headers) - len(lead))
    return TableData("Entity scores (P / R / F1, %)", headers, rows, justify)


def size_speed_table(report: Report) -> TableData:
    bench = report.has_bench
    headers = ["model", "parameters", "x fewer params", "weights on disk", "x smaller on disk"]
    if bench:
        headers += ["latency p50 (ms)", "p50 min–max (ms)", "latency p95 (ms)", "words/s", "words/s min–max",
                    "speed-up (latency)", "speed-up (throughput)", "peak mem (MB)"]
    rows = []
    for row in report.rows:
        c, b = row.compression, row.bench or {}
        cells = [row.name, count(c["parameters"]), ratio(c["params_ratio"]), size(c["disk_bytes"]),
                 ratio(c["disk_ratio"])]
        if bench:
            cells += [num(b.get("latency_ms_p50")), span(b, "latency_ms_p50"), num(b.get("latency_ms_p95")),
                      num(b.get("words_per_s"), ",.0f"), span(b, "words_per_s", ",.0f"),
                      ratio(c["speedup_latency"]), ratio(c["speedup_throughput"]), num(b.get("peak_mem_mb"))]
        rows.append(cells)
    return TableData("Size and speed", headers, rows)


RATIOS = ("x fewer params", "x smaller on disk", "speed-up (latency)", "speed-up (throughput)")


def ratios_first(table: TableData) -> TableData:
    """``table`` with its ratio columns (:data:`RATIOS`) right after the model's name: a page shows them
    without scrolling sideways (the terminal splits the table instead, :mod:`nerkd.cli.render`)."""
    lead = [0] + [i for i, c in enumerate(table.columns) if c in RATIOS]
    order = lead + [i for i in range(len(table.columns)) if i not in lead]

    def pick(cells: list[str]) -> list[str]:
        return [cells[i] for i in order]

    return TableData(table.title, pick(table.columns), [pick(r) for r in table.rows], pick(table.justify))


def confusion_table(report: Report) -> TableData | None:
    if report.errors is None or not report.errors.models:
        return None
    columns, rows = errors_page.confusion_columns(report.errors)
    return TableData(errors_page.CONFUSION_TITLE, columns, rows)


def training_table(report: Report) -> TableData | None:
    rows = []
    for row in report.rows:
        t = row.train_summary
        if t:
            stopped = t.get("stopped_early")
            rows.append([row.name, pct(t.get("best_f1")), str(t.get("best_epoch", DASH)),
                         str(t.get("epochs_run", DASH)), DASH if stopped is None else ("yes" if stopped else "no")])
    columns = ["model", "best dev F1", "best epoch", "epochs run", "stopped early"]
    return TableData("Training runs (dev set)", columns, rows) if rows else None


def heads_table(report: Report) -> TableData | None:
    rows = []
    for row in report.rows:
        hi = row.head_importance
        if not row.base or (hi is None and not row.score.pruned):
            continue
        pruned = len((hi or {}).get("pruned") or [])
        rows.append([row.name, " ".join(str(h) for h in row.score.heads), str(pruned) if hi else DASH,
                     count((hi or {}).get("params_before")), count((hi or {}).get("params_after"))])
    columns = ["model", "heads per layer", "pruned heads", "params before", "params after"]
    return TableData("Pruning", columns, rows) if rows else None


def speed_lines(report: Report) -> list[str]:
    """What to know before reading the speed figures: warnings first, then how they were timed."""
    lines = [f"Warning: {w}" for w in report.warnings]
    blocks = sorted({b.blocks for b in report.benches if b.blocks})
    if report.has_bench and blocks:
        lines.append(f"Speed: medians over {'/'.join(map(str, blocks))} blocks in which the models took turns; "
                     "min–max: the spread over those blocks.")
    return lines


def data_line(report: Report) -> str:
    d = report.data
    support = ", ".join(f"{t} {n}" for t, n in d.support().items())
    return (f"{d.path}: {d.sentences} sentences, {d.words} words, scheme {d.scheme}; "
            f"gold entities: {support}. Scored on {report.device} ({report.precision}).")


# -- Markdown -------------------------------------------------------------------------------

def _md_table(table: TableData) -> str:
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---:" if j == "right" else "---" for j in table.justify) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table.rows]
    return "\n".join(lines)


def _md_errors(report: Report) -> list[str]:
    confusion = confusion_table(report)
    if confusion is None:
        return []
    return [f"## {errors_page.TITLE}", "", f"### {confusion.title}", "", _md_table(confusion), "",
            *errors_page.markdown_section(report.errors)]


def markdown(report: Report) -> str:
    entities, sizes = entity_table(report), ratios_first(size_speed_table(report))
    parts = ["# nerkd report", "", f"Created {report.created}.", "", f"Data: {data_line(report)}", "",
             f"## {entities.title}", "", _md_table(entities), "", f"## {sizes.title}", ""]
    for line in speed_lines(report):
        parts += [f"**{line}**" if line.startswith("Warning:") else line, ""]
    parts += [_md_table(sizes), ""]
    if not report.has_bench:
        parts += ["Bench figures missing: run `nerkd bench` for latency and throughput.", ""]
    for table in (training_table(report), heads_table(report)):
        if table:
            parts += [f"## {table.title}", "", _md_table(table), ""]
    parts += ["## Plots", ""]
    if report.plots_skipped:
        parts += [f"Plots skipped: {report.plots_skipped}.", ""]
    for title, path in report.plots.items():
        parts += [f"![{title}]({Path(path).name})", "", f"*{title}*", ""]
    parts += _md_redaction(report)
    parts += _md_errors(report)
    parts += ["## Notes", ""] + ([f"- {n}" for n in report.notes] or [NO_NOTES]) + [""]
    parts += ["## How to read this report", ""] + [f"- {line}" for line in legend(report)]
    return "\n".join(parts) + "\n"


def _md_redaction(report: Report) -> list[str]:
    if report.redaction is None:
        return []
    parts = [f"## {leak_page.TITLE}", ""]
    for line in leak_page.lines(report.redaction, report.data.path):
        parts += [line, ""]
    for table in redaction_tables(report):
        parts += [f"### {table.title}", "", _md_table(table), ""]
    return parts


# -- HTML -----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:right;white-space:nowrap}
th{background:#f3f4f6}td:first-child,th:first-child{text-align:left;font-weight:600}
tr:nth-child(even) td{background:#fafafa}.meta{color:#555}
figure{margin:1rem 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9rem}
li{margin:.2rem 0}code{background:#f3f4f6;padding:0 .2rem}
""" + errors_page.CSS


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: TableData) -> str:
    """Columns justified by the page's CSS (first left, figures right)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: str) -> str:
    """Escape, then turn `backticks` into <code>."""
    pieces = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _html_errors(report: Report) -> list[str]:
    confusion = confusion_table(report)
    if confusion is None:
        return []
    return [f'<h2 id="errors">{_e(errors_page.TITLE)}</h2>', f"<h3>{_e(confusion.title)}</h3>",
            _html_table(confusion), *errors_page.html_section(report.errors, report.data.types)]


def redaction_tables(report: Report) -> list[TableData]:
    """The redaction section's tables (:mod:`nerkd.report.leak_page`); none without the section."""
    return [TableData(*t) for t in leak_page.tables(report.redaction)] if report.redaction is not None else []


def _html_redaction(report: Report) -> list[str]:
    if report.redaction is None:
        return []
    parts = [f'<h2 id="redaction">{_e(leak_page.TITLE)}</h2>']
    parts += [f"<p>{_code(line)}</p>" for line in leak_page.lines(report.redaction, report.data.path)]
    for table in redaction_tables(report):
        parts += [f"<h3>{_e(table.title)}</h3>", _html_table(table)]
    return parts


def html_page(report: Report) -> str:
    entities, sizes = entity_table(report), ratios_first(size_speed_table(report))
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>nerkd report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>nerkd report</h1>", f'<p class="meta">Created {_e(report.created)}.<br>Data: '
             f"{_e(data_line(report))}</p>",
             f"<h2>{_e(entities.title)}</h2>", _html_table(entities), f"<h2>{_e(sizes.title)}</h2>"]
    parts += [f"<p><strong>{_code(line)}</strong></p>" if line.startswith("Warning:") else f"<p>{_code(line)}</p>"
              for line in speed_lines(report)]
    parts.append(_html_table(sizes))
    if not report.has_bench:
        parts.append(f"<p>{_code('Bench figures missing: run `nerkd bench` for latency and throughput.')}</p>")
    for table in (training_table(report), heads_table(report)):
        if table:
            parts += [f"<h2>{_e(table.title)}</h2>", _html_table(table)]
    parts.append("<h2>Plots</h2>")
    if report.plots_skipped:
        parts.append(f"<p>Plots skipped: {_code(report.plots_skipped)}.</p>")
    for title, path in report.plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_code(title)}</figcaption></figure>")
    parts += _html_redaction(report)
    parts += _html_errors(report)
    parts += ['<h2 id="notes">Notes</h2><ul>'] + [f"<li>{_code(n)}</li>" for n in report.notes or [NO_NOTES]]
    parts += ["</ul><h2>How to read this report</h2><ul>"]
    parts += [f"<li>{_code(x)}</li>".replace("(see Notes)", '(see <a href="#notes">Notes</a>)') for x in legend(report)]
    parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- JSON -----------------------------------------------------------------------------------

def as_json(report: Report) -> dict:
    d = report.data
    models = []
    for row in report.rows:
        s = row.score
        models.append({
            "name": s.name, "path": s.path, "stage": row.stage, "runtime": s.runtime.as_dict(),
            "reference": row.reference, "f1_delta": row.f1_delta, "labels": s.labels,
            "scheme": s.scheme, "heads": s.heads, "parameters": s.parameters, "disk_bytes": row.compression.get(
                "disk_bytes"), "scores": s.scores, "dropped_spans": s.dropped, "renamed": s.renamed,
            "missing_types": s.missing_types, "windows": s.encoded, "compression": row.compression,
            "bench": row.bench, "train_summary": row.train_summary, "head_importance": row.head_importance,
        })
    return {
        "created": report.created,
        "data": {"path": d.path, "sentences": d.sentences, "words": d.words, "types": d.types,
                 "scheme": d.scheme, "support": d.support()},
        "device": report.device, "precision": report.precision, "models": models,
        "benches": [{"path": b.path, "machine": b.machine, "date": b.date, "precision": b.precision,
                     "sentences": b.sentences, "words": b.words, "blocks": b.blocks, "warnings": b.warnings}
                    for b in report.benches],
        "bench_unmatched": report.bench_unmatched, "warnings": report.warnings, "notes": report.notes,
        "plots": {title: Path(p).name for title, p in report.plots.items()},
        "plots_skipped": report.plots_skipped,
        "redaction": report.redaction.as_dict() if report.redaction is not None else None,
        **(errors_page.as_json(report.errors) if report.errors is not None
           else {"errors_in_context": None, "confusion": None}),
    }


def write_report(report: Report) -> dict[str, Path]:
    out = report.output
    return {
        "md": atomic_write_text(out / "report.md", markdown(report)),
        "html": atomic_write_text(out / "report.html", html_page(report)),
        "json": write_json(out / "report.json", as_json(report)),
    }

