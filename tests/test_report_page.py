"""The report people look at (issue #22 item 22): ratios first in the size and speed table, the Notes
section the legend points to, pruned heads marked so they can be seen on the heat map."""

from __future__ import annotations

from pathlib import Path

import orjson

TEST = Path(__file__).resolve().parents[1] / "data" / "test.jsonl"
RATIOS = ["x fewer params", "x smaller on disk", "speed-up (latency)", "speed-up (throughput)"]


def _report(model: Path, tmp_path: Path, bench: bool):
    from nerkd.project import Project
    from nerkd.report.render import write_report
    from nerkd.settings import Settings
    from nerkd.stages.report import build_report, named_models

    files = []
    if bench:
        entry = {"name": "m", "path": str(model), "parameters": 1000, "disk_bytes": 4000, "latency_ms_p50": 2.0,
                 "latency_ms_p95": 3.0, "words_per_s": 100.0, "peak_mem_mb": 5.0}
        files = [tmp_path / "bench.json"]
        files[0].write_bytes(orjson.dumps({"precision": "fp32", "models": [entry]}))
    rep = build_report(Settings(data={"limit": 8}), Project.discover(tmp_path), data=str(TEST),
                       models=named_models([f"m={model}"]), bench_files=files, output=tmp_path / "r")
    return rep, write_report(rep)


def _md_header(md: str, title: str) -> list[str]:
    text = md.split(f"## {title}", 1)[1]
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    return [c.strip() for c in header.strip("|").split("|")]


def test_ratios_come_right_after_the_model(tiny_bio, tmp_path):
    rep, files = _report(tiny_bio, tmp_path, bench=True)
    md = files["md"].read_text(encoding="utf-8")
    header = _md_header(md, "Size and speed")
    assert header[:5] == ["model", *RATIOS] and len(header) == 13
    page = files["html"].read_text(encoding="utf-8")
    table = page.split("<h2>Size and speed</h2>", 1)[1].split("</thead>", 1)[0]
    assert table.index("<th>model</th>") < table.index("<th>speed-up (throughput)</th>") < \
        table.index("<th>parameters</th>")
    # the cells follow their headers: the row's own figures are where their column is
    row = md.split("## Size and speed", 1)[1].split("| m |", 1)[1].split("\n", 1)[0]
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    assert cells[header.index("x fewer params") - 1] == "1.00x"
    assert cells[header.index("latency p50 (ms)") - 1] == "2.0"


def test_ratios_first_without_bench(tiny_bio, tmp_path):
    _, files = _report(tiny_bio, tmp_path, bench=False)
    md = files["md"].read_text(encoding="utf-8")
    assert _md_header(md, "Size and speed") == ["model", "x fewer params", "x smaller on disk", "parameters",
                                                "weights on disk"]


def test_legend_points_to_a_notes_section(tiny_bio, tmp_path):
    """'see Notes' in the legend: the section is there even when the report has no note."""
    from nerkd.report.render import html_page, markdown

    rep, _ = _report(tiny_bio, tmp_path, bench=False)
    rep.notes.clear()
    md, page = markdown(rep), html_page(rep)
    assert "(see Notes)" in md and "\n## Notes\n\nNo notes for this report.\n" in md
    assert '<h2 id="notes">Notes</h2>' in page and '(see <a href="#notes">Notes</a>)' in page


def test_pruned_heads_are_marked_in_black_and_white(tmp_path):
    """The cross of a pruned head: a mark of several hundred pixels, both near-white and near-black, so it
    shows on the dark and the light end of the colour map (before: a thin red x, ~160 pixels, none black)."""
    import matplotlib.image as mpimg
    import numpy as np

    from nerkd.report.plots import head_heatmap

    scores = [[0.26, 0.6, 0.5, 0.52], [0.52, 0.38, 0.51, 0.51]]
    head_heatmap(scores, [], tmp_path / "a.png", title="t")
    head_heatmap(scores, [[0, 0], [1, 1]], tmp_path / "b.png", title="t")
    a, b = mpimg.imread(tmp_path / "a.png")[..., :3], mpimg.imread(tmp_path / "b.png")[..., :3]
    mark = np.abs(a - b).max(axis=2) > 0.1
    lum = b.mean(axis=2)
    assert mark.sum() > 600, mark.sum()
    assert (mark & (lum > 0.9)).sum() > 200 and (mark & (lum < 0.15)).sum() > 200
