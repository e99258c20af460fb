"""Results as rich tables, for the commands to print (engines return data; only the CLI draws).

- :func:`scores_table`: entity precision / recall / F1 per type (a dev or test evaluation);
- :func:`training_result`: what a training run (distill, finetune) ended with;
- :func:`head_table`: the layers x heads importance table, cells shaded, removed heads marked.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from rich.style import Style
from rich.table import Table
from rich.text import Text

LOW = (247, 251, 255)    # background of the least important head
HIGH = (8, 69, 148)      # background of the most important head
PRUNED_MARK = "x"
GONE_MARK = "-"


def _shade(t: float) -> Style:
    t = min(1.0, max(0.0, t))
    rgb = tuple(int(round(lo + (hi - lo) * t)) for lo, hi in zip(LOW, HIGH, strict=True))
    return Style(bgcolor="rgb({},{},{})".format(*rgb), color="white" if t > 0.55 else "black")


def _fmt(v: float, top: float) -> str:
    return f"{v:.2f}" if top < 100 else f"{v:.0f}"


def head_table(grid: Sequence[Sequence[float | None]], pruned: Collection[tuple[int, int]], *,
               title: str = "head importance", caption: str | None = None) -> Table:
    """``grid[layer][head]``: score, or None for a head removed by an earlier prune.

    ``pruned``: ``(layer, head)`` pairs removed now (marked ``x`` in bold red, struck through).
    """
    pruned = set(pruned)
    values = [v for row in grid for v in row if v is not None]
    top = max(values, default=0.0) or 1.0
    n_heads = max((len(row) for row in grid), default=0)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("layer", justify="right")
    for h in range(n_heads):
        table.add_column(f"h{h}", justify="right")
    table.add_column("kept", justify="right")
    for layer, row in enumerate(grid):
        cells: list[Text] = []
        kept = 0
        for h in range(n_heads):
            v = row[h] if h < len(row) else None
            if v is None:
                cells.append(Text(GONE_MARK, style="dim"))
                continue
            style = _shade(v / top)
            if (layer, h) in pruned:
                style += Style(color="red", bold=True, strike=True)
                cells.append(Text(f"{PRUNED_MARK} {_fmt(v, top)}", style=style))
            else:
                kept += 1
                cells.append(Text(_fmt(v, top), style=style))
        cells.append(Text(f"{kept}/{len(row)}", style="bold red" if kept == 0 else ""))
        table.add_row(str(layer), *cells)
    return table


LEGEND = f"{PRUNED_MARK} = removed now (red), {GONE_MARK} = removed earlier; darker = more important"


def scores_table(result: dict, title: str) -> Table:
    """Entity-level precision / recall / F1 per type (from :func:`nerkd.metrics.evaluate`)."""
    table = Table(title=title, title_justify="left")
    for col in ("type", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for name, row in sorted(result["per_type"].items()):
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    table.add_row("[bold]overall[/]", f"{result['precision']:.4f}", f"{result['recall']:.4f}",
                  f"[bold]{result['f1']:.4f}[/]", str(result["support"]))
    return table


def training_result(result, stage: str) -> list:
    """What a training run returns (:class:`nerkd.train.loop.TrainResult`) as printables:
    the best epoch's dev scores, then one summary table."""
    parts: list = []
    if result.dev is not None:
        parts.append(scores_table(result.dev, f"{stage}: dev scores (best epoch {result.best_epoch})"))
    table = Table(title=f"nerkd {stage}", title_justify="left")
    table.add_column("result")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("run folder", str(result.out_dir))
    for name in ("best_f1", "best_epoch", "epochs_run", "steps", "stop_reason"):
        value = getattr(result, name, None)
        if value is not None:
            table.add_row(name.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value))
    parts.append(table)
    return parts


# -- nerkd report ----------------------------------------------------------------------------------

if TYPE_CHECKING:
    from nerkd.report.records import Report
    from nerkd.report.render import TableData


def rich_table(data: TableData) -> Table:
    """A :class:`nerkd.report.render.TableData` as a rich table (cells never wrapped)."""
    table = Table(title=data.title, title_justify="left")
    for header, justify in zip(data.columns, data.justify, strict=True):
        table.add_column(header, justify=justify, no_wrap=True)
    for row in data.rows:
        table.add_row(*row)
    return table


def compact_entity_table(report: Report) -> TableData:
    """The entity table for a terminal: one ``P/R/F1`` cell per type (the runtime and F1 difference
    columns, when there, kept as they are)."""
    from nerkd.report.render import TableData, entity_table

    full = entity_table(report)
    first = next(i for i, h in enumerate(full.columns) if h.endswith(" P"))
    n = sum(1 for h in full.columns if h.endswith(" P"))
    last = first + 3 * n
    names = [full.columns[first + 3 * i].rsplit(" ", 1)[0] for i in range(n)]
    return TableData("entity scores (%)", full.columns[:first] + [f"{t} P/R/F1" for t in names] + full.columns[last:],
                     [r[:first] + ["/".join(r[first + 3 * i : first + 3 * i + 3]) for i in range(n)] + r[last:]
                      for r in full.rows],
                     full.justify[:first] + ["right"] * n + full.justify[last:])


def terminal_size_speed(report: Report) -> list[TableData]:
    """The size and speed table cut in two, with short headers, for an 80-column terminal."""
    from nerkd.report.render import TableData, size_speed_table

    full = size_speed_table(report)
    rows = full.rows
    out = [TableData("size (ratios vs the first model)", ["model", "params", "x", "weights", "x"],
                     [r[:5] for r in rows])]
    if len(full.columns) > 5:
        out.append(TableData("speed (nerkd bench; speed-ups vs the first model)",
                             ["model", "p50 ms", "min–max", "p95 ms", "words/s", "min–max", "x latency",
                              "x throughput", "mem MB"],
                             [[r[0], *r[5:]] for r in rows]))
    return out


def report_tables(report: Report) -> list[Table]:
    """What ``nerkd report`` prints: entity scores, size, speed, training runs and pruning (when any)."""
    from dataclasses import replace

    from nerkd.report.render import heads_table, redaction_tables, training_table

    tables = [compact_entity_table(report), *terminal_size_speed(report)]
    for data, title in ((training_table(report), "training runs (dev)"), (heads_table(report), "pruning")):
        if data is not None:
            tables.append(replace(data, title=title))
    tables += redaction_tables(report)
    return [rich_table(t) for t in tables]
