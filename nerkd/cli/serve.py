from __future__ import annotations

from typing import Annotated

import typer

from nerkd.cli.common import (
    Backend,
    ConfigOpt,
    Int8Opt,
    ModelOpt,
    NoVerifyOpt,
    SetOpt,
    backend_option,
    resolve,
    threads_option,
)
from nerkd.cli.errors import known_errors


@known_errors
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    model: ModelOpt = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to bind. Default: serve.host (127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535, help="Default: serve.port (8000).")
                    ] = None,
    backend: Annotated[Backend | None, backend_option(
        "torch, or onnx (ONNX Runtime on CPU) for a folder written by nerkd export --format onnx. "
        "Default: infer.backend (auto: onnx for such a folder, and on a CPU for a model folder with a verified "
        "fp32 export of its weights in MODEL/onnx or MODEL_onnx; the first log line says which).")] = None,
    int8: Int8Opt = None,
    threads: Annotated[int | None, threads_option(
        "CPU threads for the model. Default: serve.threads, else the physical cores.")] = None,
) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn): POST /v1/entities, GET /health, /v1/model, /v1/stats; docs at /docs.

    POST /v1/entities takes {"text": "..."} and answers {"entities": [...]}, or takes {"texts": [...],
    "ids"?: [...]} and answers {"results": [{"id"?, "entities": [...]}]}: the entities of nerkd infer
    (same settings, exact character offsets, long texts windowed). Concurrent requests are
    micro-batched (serve.max_batch_words, serve.max_wait_ms); bodies, texts per request and
    characters per text are limited (serve.max_body_bytes, serve.max_texts, serve.max_chars).
    POST /v1/redact takes the same body (plus "mode", "bias") and answers as nerkd redact (redact.*
    settings; never the mapping); GET / is a page to paste a note and see it highlighted and redacted.
    Binds 127.0.0.1 by default. Set a bearer token with the environment variable NERKD_SERVE_TOKEN
    (or serve.token): requests to /v1/* then need "Authorization: Bearer <token>". Request bodies are
    never logged. Ctrl-C or SIGTERM stops it after the queued requests are answered. Needs the
    serve extra: pip install 'nerkd\\[serve]'.

    \b
    Example:
      nerkd serve --model artifacts/final --port 8000
    """
    from nerkd.stages.serve import run_serve

    settings, project = resolve(config, set_, no_verify=no_verify)
    run_serve(settings, project, model, host=host, port=port, backend=backend.value if backend else None, int8=int8,
              threads=threads)
