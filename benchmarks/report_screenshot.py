#!/usr/bin/env python3
"""Check that a report.html shows its ratio columns without scrolling sideways, in headless Chromium.

    python benchmarks/report_screenshot.py artifacts/report/report.html --png /tmp/report-1400.png

The page is opened at a 1400 x 900 window (``--width``/``--height``) twice, from a copy in a temporary
folder (the report itself is not touched, and keeps no script):

1. ``--dump-dom`` of a copy with a small script at the end of the body that measures, in the "Size and
   speed" table, the right edge of each ratio column's header (``x fewer params``, ``x smaller on
   disk``, ``speed-up (latency)``, ``speed-up (throughput)``) and the right edge of what can be seen
   without scrolling (the viewport, and the table's own box: the page lets a wide table scroll inside
   it), and writes them as JSON into the page; this script reads them back from the dumped DOM;
2. ``--screenshot`` (``--png``) of the report as it opens (no script), to look at; it says whether the
   table starts within the window's height (with the quickstart's four models it does).

Exit status: 0 when every ratio header ends within what is visible, 1 when one does not (or is
missing), 2 when Chromium fails. Chromium runs with a throw-away profile, no sandbox (containers), no
GPU, and its background traffic off; the page itself loads nothing (its plots are embedded).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RATIOS = ["x fewer params", "x smaller on disk", "speed-up (latency)", "speed-up (throughput)"]
TABLE = "Size and speed"
PROBE_ID = "nerkd-probe"
# runs at the end of the body: layout is done, nothing has been scrolled yet
PROBE = """
<script>
(function () {
  var ratios = %(ratios)s, out = {viewport: document.documentElement.clientWidth, headers: {}};
  var h2 = Array.prototype.find.call(document.querySelectorAll("h2"), function (h) {
    return h.textContent.trim() === %(table)s; });
  var table = h2 && h2.nextElementSibling;
  while (table && table.tagName !== "TABLE" && table.tagName !== "H2") { table = table.nextElementSibling; }
  if (table && table.tagName === "TABLE") {
    var box = table.getBoundingClientRect();
    out.table_visible_right = box.left + table.clientWidth;
    out.table_scroll_width = table.scrollWidth;
    table.querySelectorAll("th").forEach(function (th) {
      var name = th.textContent.trim();
      if (ratios.indexOf(name) >= 0) { out.headers[name] = th.getBoundingClientRect().right; }
    });
    out.table_top = box.top;
  }
  var pre = document.createElement("pre");
  pre.id = %(probe_id)s;
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium_binary(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("report_screenshot: no chromium found (apt-get install chromium, or --chromium PATH)")


def chromium(binary: str, page: Path, profile: Path, width: int, height: int, *extra: str) -> str:
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", *extra, page.as_uri()]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        print("report_screenshot: chromium took over 120 s", file=sys.stderr)
        raise SystemExit(2) from None
    if done.returncode != 0:
        print(f"report_screenshot: chromium exited {done.returncode}: {done.stderr[-2000:]}", file=sys.stderr)
        raise SystemExit(2)
    return done.stdout


def with_probe(source: str) -> str:
    script = PROBE % {"ratios": json.dumps(RATIOS), "table": json.dumps(TABLE), "probe_id": json.dumps(PROBE_ID)}
    if "</body>" not in source:
        raise SystemExit("report_screenshot: the page has no </body>: not a nerkd report.html?")
    return source.replace("</body>", script + "</body>", 1)


def measure(dom: str) -> dict:
    m = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dom, flags=re.S)
    if not m:
        print("report_screenshot: the probe did not run (no measurements in the dumped DOM)", file=sys.stderr)
        raise SystemExit(2)
    return json.loads(html.unescape(m.group(1)))


def verdict(found: dict, width: int) -> int:
    """Print one line per ratio header; 0 when all are visible without scrolling sideways, else 1."""
    limit = min(found.get("viewport") or width, found.get("table_visible_right") or width)
    print(f"window {width} px: viewport {found.get('viewport')} px, size table visible up to "
          f"{found.get('table_visible_right')} px (scroll width {found.get('table_scroll_width')} px)")
    bad = 0
    for name in RATIOS:
        right = found["headers"].get(name)
        ok = right is not None and right <= limit
        bad += not ok
        where = "missing" if right is None else f"right edge {right:.0f} px"
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {where} (limit {limit:.0f} px)")
    print("ratios visible without scrolling" if not bad else f"{bad} ratio column(s) not visible without scrolling")
    return 1 if bad else 0


def quantize(png: Path, colours: int) -> None:
    """A palette PNG (Pillow, installed with matplotlib): a smaller file for docs/."""
    from PIL import Image

    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a report.html written by nerkd report")
    ap.add_argument("--png", type=Path, help="write the screenshot (the top of the page) here")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--colours", type=int, default=0, help="quantize the PNG to this many colours (0: keep)")
    ap.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    args = ap.parse_args(argv)
    binary = chromium_binary(args.chromium)
    source = args.report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="nerkd-shot-") as tmp:
        tmp = Path(tmp)
        probe = tmp / "probe.html"
        probe.write_text(with_probe(source), encoding="utf-8")
        found = measure(chromium(binary, probe, tmp / "profile", args.width, args.height, "--dump-dom"))
        status = verdict(found, args.width)
        if args.png:
            shot = tmp / "shot.html"
            shot.write_text(source, encoding="utf-8")
            out = tmp / "shot.png"
            chromium(binary, shot, tmp / "profile", args.width, args.height, f"--screenshot={out}")
            if args.colours:
                quantize(out, args.colours)
            args.png.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, args.png)
            top = found.get("table_top")
            seen = "in view" if top is not None and top < args.height else "below the window: not in the picture"
            print(f"screenshot: {args.png} ({args.png.stat().st_size // 1024} KiB); size table at {top} px, {seen}")
    return status


if __name__ == "__main__":
    sys.exit(main())
