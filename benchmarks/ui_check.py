#!/usr/bin/env python3
"""Check ``nerkd serve``'s page (``GET /``) in a real browser: headless Chromium against a local server.

    python benchmarks/ui_check.py --model artifacts/final --png docs/serve-ui.png

Starts ``nerkd serve --model MODEL`` on 127.0.0.1 (a free port, one thread, with a throw-away bearer
token unless ``--no-token``: the page's token field is then exercised too) and waits for ``/health``.
Then it opens ``http://127.0.0.1:PORT/#text=<note>&token=<token>&run=1`` (the fragment is never sent to
the server: the note stays out of its access log) in headless Chromium, which fills the page and runs it
(``POST /v1/entities`` and ``POST /v1/redact``), twice:

1. ``--dump-dom`` (with ``--virtual-time-budget``, so that the two requests complete): the page's DOM,
   read back here: the state the page reached (``done`` or ``error``, and its status line), the
   highlighted entities of the note (``<mark class="ent">`` in the entities panel, their labels) and the
   replacements of the pseudonymised text; ``--dom FILE`` keeps the dump;
2. ``--screenshot`` (``--png``), to look at and for the README.

Exit status: 0 when the page reached ``done`` with at least one highlighted entity and one replacement,
1 when not (no entity highlighted, an error shown), 2 when the server or Chromium fails. Chromium runs
with a throw-away profile, no sandbox (containers), no GPU and its background traffic off; the page
itself loads nothing but its own two requests (its Content-Security-Policy allows nothing else).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

NOTE = ("VAD chez Mme Nadia Durand ce matin avec l'infirmière du SSIAD de Vierzon : elle sort du CHU de "
        "Lyon vendredi. Sa fille Colette (06 12 34 56 78, colette.durand@example.org) vit à Bourges ; "
        "RDV au CCAS de Vierzon le 14/03/2025.")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_binary(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("ui_check: no chromium found (apt-get install chromium, or --chromium PATH)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, token: str | None, log: Path, sets: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NERKD_SERVE_TOKEN"}
    env["HF_HUB_OFFLINE"] = "1"
    if token:
        env["NERKD_SERVE_TOKEN"] = token
    cmd = [sys.executable, "-m", "nerkd", "serve", "--model", model, "--port", str(port), "--threads", "1"]
    for item in sets:
        cmd += ["--set", item]
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def wait_health(proc: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"ui_check: nerkd serve exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}",
                  file=sys.stderr)
            raise SystemExit(2)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as res:
                if res.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    print(f"ui_check: the server was not ready after {timeout:.0f} s", file=sys.stderr)
    raise SystemExit(2)


def chromium(binary: str, url: str, profile: Path, width: int, height: int, budget: int, *extra: str) -> str:
    args = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--virtual-time-budget={budget}", *extra, url]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        print("ui_check: chromium took over 180 s", file=sys.stderr)
        raise SystemExit(2) from None
    if done.returncode != 0:
        print(f"ui_check: chromium exited {done.returncode}: {done.stderr[-2000:]}", file=sys.stderr)
        raise SystemExit(2)
    return done.stdout


def panel(dom: str, panel_id: str) -> str:
    """The inner HTML of the page's panel ``panel_id`` (``entities`` or ``redacted``)."""
    m = re.search(rf'<div class="text" id="{panel_id}"[^>]*>(.*?)</div>', dom, flags=re.S)
    return m.group(1) if m else ""


def read_page(dom: str) -> dict:
    """What the page shows, from its dumped DOM."""
    state = re.search(r'<body[^>]*data-state="(\w+)"', dom)
    status = re.search(r'<div id="status"[^>]*>(.*?)</div>', dom, flags=re.S)
    marks = {name: re.findall(r'<mark class="ent(?: rule)?" data-label="([^"]+)"', panel(dom, name))
             for name in ("entities", "redacted")}
    return {"state": state.group(1) if state else "not run",
            "status": html.unescape(re.sub(r"<[^>]+>", "", status.group(1))).strip() if status else "",
            "entities": marks["entities"], "replacements": marks["redacted"],
            "rules": len(re.findall(r'<mark class="ent rule"', panel(dom, "redacted")))}


def verdict(found: dict) -> int:
    def labels(items: list[str]) -> str:
        counts = {lab: items.count(lab) for lab in sorted(set(items))}
        return ", ".join(f"{lab} {n}" for lab, n in counts.items()) or "none"

    print(f"page state: {found['state']}; status line: {found['status'] or '(empty)'}")
    print(f"highlighted entities: {len(found['entities'])} ({labels(found['entities'])})")
    print(f"replacements in the pseudonymised text: {len(found['replacements'])} "
          f"({labels(found['replacements'])}; {found['rules']} by rules)")
    ok = found["state"] == "done" and found["entities"] and found["replacements"]
    print("ui_check: ok" if ok else "ui_check: FAIL (the page shows no highlighted entity for the note)")
    return 0 if ok else 1


def quantize(png: Path, colours: int) -> None:
    """A palette PNG (Pillow, installed with matplotlib): a smaller file for docs/."""
    from PIL import Image

    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the model folder to serve")
    ap.add_argument("--note", default=NOTE, help="the note typed into the page (default: a sample note)")
    ap.add_argument("--mode", help="redact mode chosen in the page (default: the server's redact.mode)")
    ap.add_argument("--bias", type=float, help="bias chosen in the page (default: the server's redact.bias)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to nerkd serve (repeatable), e.g. redact.dates=redact")
    ap.add_argument("--no-token", action="store_true", help="serve without a bearer token")
    ap.add_argument("--png", type=Path, help="write the screenshot here (e.g. docs/serve-ui.png)")
    ap.add_argument("--dom", type=Path, help="keep the dumped DOM here")
    ap.add_argument("--colours", type=int, default=0, help="quantize the PNG to this many colours (0: keep)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=760)
    ap.add_argument("--budget", type=int, default=5000, help="Chromium's --virtual-time-budget (ms)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model to load")
    ap.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    args = ap.parse_args(argv)
    binary = chromium_binary(args.chromium)
    token = None if args.no_token else secrets.token_urlsafe(16)
    fragment = {"text": args.note, "run": "1", **({"token": token} if token else {}),
                **({"mode": args.mode} if args.mode else {}), **({"bias": str(args.bias)} if args.bias is not None
                                                                 else {})}
    port = free_port()
    url = f"http://127.0.0.1:{port}/#" + urllib.parse.urlencode(fragment, quote_via=urllib.parse.quote)
    with tempfile.TemporaryDirectory(prefix="nerkd-ui-") as tmp:
        tmp = Path(tmp)
        log = tmp / "serve.log"
        proc = start_server(args.model, port, token, log, args.sets)
        try:
            wait_health(proc, port, log, args.timeout)
            dom = chromium(binary, url, tmp / "profile", args.width, args.height, args.budget, "--dump-dom")
            if args.dom:
                args.dom.write_text(dom, encoding="utf-8")
            status = verdict(read_page(dom))
            if args.png:
                shot = tmp / "shot.png"
                chromium(binary, url, tmp / "profile", args.width, args.height, args.budget,
                         f"--screenshot={shot}")
                if args.colours:
                    quantize(shot, args.colours)
                args.png.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, args.png)
                print(f"screenshot: {args.png} ({args.png.stat().st_size // 1024} KiB)")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        served = log.read_text(errors="replace")
        leaked = [part for part in re.findall(r"[\w@.]{6,}", args.note) if part in served]
        if leaked:   # the note must never reach the server's log (access log included)
            print(f"ui_check: FAIL: {len(leaked)} words of the note in the server's log", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
