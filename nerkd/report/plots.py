"""PNG plots of the report (matplotlib, Agg canvas; an optional extra: ``pip install 'nerkd[plots]'``).

matplotlib is imported lazily, and only here: without it the report is still written, and says
that the plots were skipped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nerkd.io import atomic_write_bytes

PRUNED_MARK_SIZE = 300  # points²: a cross ~17 pt wide, inside a cell of a 12-layer x 12-head heat map
MISSING = "matplotlib is not installed: plots skipped (pip install 'nerkd[plots]')"


@dataclass
class Point:
    name: str
    x: float
    y: float


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else the note to print in the report."""
    try:
        import matplotlib.figure  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return atomic_write_bytes(path, buf.getvalue())


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i].x, -points[i].y))
    front, best = [], float("-inf")
    for i in order:
        if points[i].y > best:
            front.append(i)
            best = points[i].y
    return front


def pareto_plot(points: Sequence[Point], path: Path, *, xlabel: str, title: str, log_x: bool = False) -> Path:
    """F1 (y) against cost (x): points in pipeline order joined by a dotted path, the front in red."""
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    xs, ys = [p.x for p in points], [p.y for p in points]
    ax.plot(xs, ys, linestyle=":", color="0.6", zorder=1, label="pipeline order")
    front = pareto_front(points)
    fx, fy = [points[i].x for i in front], [points[i].y for i in front]
    ax.step(fx, fy, where="post", color="tab:red", linewidth=1.8, zorder=2, label="Pareto front")
    on_front = set(front)
    for i, p in enumerate(points):
        ax.scatter([p.x], [p.y], s=60, zorder=3, edgecolors="black",
                   color="tab:red" if i in on_front else "tab:blue")
        ax.annotate(p.name, (p.x, p.y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    if log_x and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("entity F1 (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def head_heatmap(scores: Sequence[Sequence[float]], pruned: Sequence[Sequence[int]], path: Path, *,
                 title: str) -> Path:
    """Layers (rows) x heads (columns) importance; pruned heads marked with a cross."""
    n_layers = len(scores)
    n_heads = max((len(r) for r in scores), default=0)
    grid = [[float("nan")] * n_heads for _ in range(n_layers)]
    for i, row in enumerate(scores):
        for j, v in enumerate(row):
            grid[i][j] = float("nan") if v is None else float(v)  # None: removed by an earlier prune
    fig = _figure(max(5.0, 0.45 * n_heads + 2.2), max(2.6, 0.38 * n_layers + 1.4))
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="importance")
    marks = [(layer, head) for layer, head in pruned if 0 <= layer < n_layers and 0 <= head < n_heads]
    if marks:  # a bold white cross edged in black: visible on the dark and the light end of the colour map
        ax.scatter([h for _, h in marks], [la for la, _ in marks], marker="X", s=PRUNED_MARK_SIZE, c="white",
                   edgecolors="black", linewidths=1.8, zorder=3)
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer (0-based)")
    ax.set_title(title, fontsize=11)
    return _save(fig, path)
