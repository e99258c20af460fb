"""The one-page UI of ``nerkd serve`` at ``GET /``: paste a note, see its entities highlighted by label and
the pseudonymised text beside it.

One self-contained HTML page: inline CSS and JavaScript, no external asset, no CDN, no font or image to
fetch. It calls ``POST /v1/entities`` and ``POST /v1/redact`` of the same server (with the bearer token
typed into its token field when the server has one). A ``Content-Security-Policy`` header allows exactly
its own script and style (by their SHA-256) and requests to the same origin, so the page cannot load
anything else even if a text tried to inject markup (texts are only ever inserted as text nodes).

The page reads its fragment (never sent to the server, so never in an access log):
``/#text=<note>&mode=surrogate&bias=3&token=<token>&run=1`` prefills the fields and, with ``run`` (or a
``text``), runs at once; ``benchmarks/ui_check.py`` drives it that way in headless Chromium.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

import orjson
from fastapi import FastAPI
from fastapi.responses import Response

from nerkd.serve.redact import MODES

if TYPE_CHECKING:
    from nerkd.settings import RedactSettings

STYLE = """
:root{--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;background:#fff;
line-height:1.5}
header{padding:.9rem 1.5rem;border-bottom:1px solid var(--line);background:var(--bg);display:flex;gap:1rem;
align-items:baseline;flex-wrap:wrap}
header h1{font-size:1.15rem;margin:0}header .model{color:var(--muted);font-size:.9rem}
main{padding:1rem 1.5rem;max-width:1400px;margin:0 auto}
textarea{width:100%;min-height:7.5rem;font:inherit;padding:.6rem;border:1px solid var(--line);border-radius:6px;
resize:vertical}
.controls{display:flex;gap:1rem;align-items:end;flex-wrap:wrap;margin:.6rem 0 1rem}
.controls label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted);gap:.15rem}
select,input{font:inherit;padding:.3rem .45rem;border:1px solid var(--line);border-radius:6px;background:#fff}
input[type=number]{width:5.5rem}input[type=password]{width:14rem}
button{font:inherit;font-weight:600;padding:.4rem 1.1rem;border-radius:6px;border:1px solid #1f6feb;
background:var(--accent);color:#fff;cursor:pointer}button:disabled{opacity:.6;cursor:wait}
.panels{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
@media (max-width:800px){.panels{grid-template-columns:1fr}}
section{border:1px solid var(--line);border-radius:6px;min-width:0}
section h2{font-size:.95rem;margin:0;padding:.45rem .75rem;border-bottom:1px solid var(--line);background:var(--bg);
display:flex;justify-content:space-between;gap:.5rem}
section h2 small{font-weight:400;color:var(--muted)}
.text{padding:.75rem;white-space:pre-wrap;overflow-wrap:anywhere;min-height:4rem;line-height:2}
mark.ent{background:color-mix(in srgb,var(--c) 22%,white);border-bottom:2px solid var(--c);border-radius:3px;
padding:.05rem .15rem;color:inherit}
mark.ent.rule{border-bottom-style:dashed}
mark.ent .tag{font-size:.62rem;font-weight:700;color:var(--c);margin-left:.25rem;vertical-align:.12rem;
letter-spacing:.02em}
.legend{display:flex;gap:.5rem;flex-wrap:wrap;margin:.8rem 0 0;font-size:.8rem;color:var(--muted)}
.legend span{border-left:4px solid var(--c);padding:0 .4rem}
#status{font-size:.9rem;color:var(--muted);min-height:1.4rem}#status.error{color:#cf222e;font-weight:600}
footer{color:var(--muted);font-size:.8rem;margin-top:1rem}
[hidden]{display:none!important}
"""

SCRIPT = r"""
"use strict";
const cfg = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const COLOURS = {PER: "#cf222e", LOC: "#1a7f37", ORG: "#0969da", MISC: "#8250df", DATE: "#9a6700",
  PHONE: "#bc4c00", EMAIL: "#bf3989", URL: "#1b7c83", NIR: "#953800", IBAN: "#6639ba", SIREN: "#0550ae",
  SIRET: "#0550ae"};
const EXTRA = ["#116329", "#a40e26", "#4d2d00", "#3e1f79", "#0a3069", "#7d4e00"];

function colour(label) {
  if (COLOURS[label]) return COLOURS[label];
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return EXTRA[h % EXTRA.length];
}

function status(message, error) {
  $("status").textContent = message;
  $("status").className = error ? "error" : "";
}

async function call(path, body) {
  const headers = {"Content-Type": "application/json"};
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = body ? {method: "POST", headers, body: JSON.stringify(body)} : {headers};
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new Error(path + ": " + res.status + " " + ((data && data.error) || res.statusText));
  return data;
}

// The server counts offsets in Unicode code points (Python); JavaScript strings in UTF-16 units.
function paint(target, text, spans, describe) {
  const chars = Array.from(text);
  target.replaceChildren();
  let at = 0;
  for (const s of spans) {
    if (s.start > at) target.append(chars.slice(at, s.start).join(""));
    const mark = document.createElement("mark");
    mark.className = "ent" + (s.source === "rule" ? " rule" : "");
    mark.dataset.label = s.label;
    mark.style.setProperty("--c", colour(s.label));
    mark.title = describe(s);
    mark.append(chars.slice(s.start, s.end).join(""));
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = s.label;
    mark.append(tag);
    target.append(mark);
    at = s.end;
  }
  if (at < chars.length) target.append(chars.slice(at).join(""));
  target.dataset.count = String(spans.length);
}

function legend(labels) {
  const box = $("legend");
  box.replaceChildren();
  for (const label of [...labels].sort()) {
    const item = document.createElement("span");
    item.style.setProperty("--c", colour(label));
    item.textContent = label;
    box.append(item);
  }
}

async function run() {
  const text = $("note").value;
  const bias = parseFloat($("bias").value);
  const body = {text, mode: $("mode").value};
  if (!Number.isNaN(bias)) body.bias = bias;
  $("go").disabled = true;
  document.body.dataset.state = "running";
  status("Analysing…");
  // each panel shows what its own call gave: a server without the redact extra still highlights entities
  const [found, redacted] = await Promise.allSettled([call("/v1/entities", {text}), call("/v1/redact", body)]);
  const labels = [];
  if (found.status === "fulfilled") {
    const ents = found.value.entities;
    paint($("entities"), text, ents, (e) => e.label + " (score " + e.score.toFixed(2) + ")");
    $("entities-count").textContent = ents.length + " entities";
    labels.push(...ents.map((e) => e.label));
  }
  if (redacted.status === "fulfilled") {
    const reps = redacted.value.replacements;
    paint($("redacted"), redacted.value.text, reps, (r) => r.label + " (" + r.source + ")");
    const rules = reps.filter((r) => r.source === "rule").length;
    $("redacted-count").textContent = reps.length + " replacements (" + rules + " by rules)";
    labels.push(...reps.map((r) => r.label));
  }
  legend(new Set(labels));
  const failed = [found, redacted].filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (failed.length) {
    status(failed.join(" · "), true);
    document.body.dataset.state = "error";
  } else {
    status("Done. Entities as nerkd infer finds them; pseudonymised with mode " + body.mode +
           (body.bias === undefined ? "" : ", bias " + body.bias) + ". Nothing is stored by the server.");
    document.body.dataset.state = "done";
  }
  $("go").disabled = false;
}

async function describeModel() {
  try {
    const info = await call("/v1/model");
    $("model").textContent = "model " + info.name + " · types " + info.types.join(", ") + " · " + info.backend;
  } catch (e) {
    $("model").textContent = cfg.auth ? "enter the server's token to see the model" : "";
  }
}

function start() {
  for (const mode of cfg.modes) {
    const option = document.createElement("option");
    option.value = option.textContent = mode;
    $("mode").append(option);
  }
  $("mode").value = cfg.mode;
  $("bias").value = String(cfg.bias);
  $("token-row").hidden = !cfg.auth;
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("text")) $("note").value = params.get("text");
  if (params.has("mode")) $("mode").value = params.get("mode");
  if (params.has("bias")) $("bias").value = params.get("bias");
  if (params.has("token")) $("token").value = params.get("token");
  $("go").addEventListener("click", run);
  $("note").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
  $("token").addEventListener("change", describeModel);
  describeModel();
  if (params.has("run") || params.has("text")) run();
}

start();
"""

BODY = """<header><h1>nerkd · pseudonymise a note</h1><span class="model" id="model"></span></header>
<main>
<textarea id="note" aria-label="note" spellcheck="false"
 placeholder="Paste a note, e.g. Mme Nadia Durand (06 12 34 56 78) a quitté le CHU de Lyon pour l'EHPAD Les Tilleuls."
></textarea>
<div class="controls">
<label>mode<select id="mode"></select></label>
<label>bias (logit offset against O)<input id="bias" type="number" step="0.5" min="-20" max="20"></label>
<label id="token-row" hidden>token<input id="token" type="password" autocomplete="off"></label>
<button id="go" type="button">Analyse (Ctrl+Enter)</button>
</div>
<div id="status" role="status"></div>
<div class="panels">
<section><h2>Entities <small id="entities-count"></small></h2><div class="text" id="entities"></div></section>
<section><h2>Pseudonymised <small id="redacted-count"></small></h2><div class="text" id="redacted"></div></section>
</div>
<div class="legend" id="legend"></div>
<footer>Texts go to this server only and are never logged or stored; the mapping back to the original is never
sent over HTTP. Dashed: found by a rule (identifiers); solid: by the model.</footer>
</main>"""


def _digest(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


CSP = ("default-src 'none'; "
       f"script-src '{_digest(SCRIPT)}'; style-src '{_digest(STYLE)}'; connect-src 'self'; img-src data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


def page_html(*, auth: bool, mode: str, bias: float, modes: list[str]) -> str:
    """The page, with the server's defaults (``redact.mode``, ``redact.bias``) and whether a token is needed."""
    config = orjson.dumps({"auth": auth, "mode": mode, "bias": bias, "modes": modes}).decode()
    config = config.replace("<", "\\u003c")   # cannot close its <script> element, whatever it holds
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,"><title>nerkd · pseudonymise a note</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n"
            f'<script type="application/json" id="config">{config}</script>\n'
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def add_page_route(app: FastAPI, *, auth: bool, settings: RedactSettings) -> None:
    """``GET /``: the page (no token needed to load it; its calls to ``/v1/*`` carry the one typed into it)."""
    body = page_html(auth=auth, mode=settings.mode, bias=settings.bias, modes=list(MODES))

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(body, media_type="text/html; charset=utf-8", headers=HEADERS)
