from __future__ import annotations

import contextlib
import ipaddress
from enum import Enum
from typing import Annotated

import typer

from nerkd.cli.common import ConfigOpt, SetOpt, resolve
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError


class ServeBackend(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


@known_errors
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model folder (default: the newest finetune/prune/distill output).")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to bind. Default: serve.host (127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535, help="Default: serve.port (8000).")
                    ] = None,
    backend: Annotated[ServeBackend | None, typer.Option(
        "--backend", help="torch, or onnx (ONNX Runtime on CPU) for a folder written by nerkd export --format onnx. "
                          "Default: infer.backend (auto: onnx for such a folder).")] = None,
    int8: Annotated[bool | None, typer.Option(
        "--int8/--no-int8", help="Dynamic int8 quantisation of the linear layers (CPU). Default: infer.int8.")
    ] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for the model. Default: serve.threads, else the physical cores.")
    ] = None,
) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn): POST /v1/entities, GET /health, /v1/model, /v1/stats; docs at /docs.

    POST /v1/entities takes {"text": "..."} and answers {"entities": [...]}, or takes {"texts": [...],
    "ids"?: [...]} and answers {"results": [{"id"?, "entities": [...]}]}: the entities of nerkd infer
    (same settings, exact character offsets, long texts windowed). Concurrent requests are
    micro-batched (serve.max_batch_words, serve.max_wait_ms); bodies, texts per request and
    characters per text are limited (serve.max_body_bytes, serve.max_texts, serve.max_chars).
    Binds 127.0.0.1 by default. Set a bearer token with the environment variable NERKD_SERVE_TOKEN
    (or serve.token): requests to /v1/* then need "Authorization: Bearer <token>". Request bodies are
    never logged. Ctrl-C or SIGTERM stops it after the queued requests are answered. Needs the
    serve extra: pip install 'nerkd\\[serve]'.

    \b
    Example:
      nerkd serve --model artifacts/final --port 8000
    """
    from nerkd.serve import require_extra

    require_extra()
    import logging

    import uvicorn

    from nerkd.infer import Engine
    from nerkd.infer.onnx_backend import resolve_backend
    from nerkd.serve.app import create_app, resolve_token
    from nerkd.serve.info import model_info
    from nerkd.threads import describe_threads, set_threads

    settings, project = resolve(config, set_)
    ref = model or project.default_input("infer", settings.paths.artifacts)
    if ref is None:
        raise NerkdError(f"no model to serve: give --model FOLDER (no distill, prune or finetune output found "
                         f"under {project.artifacts(settings.paths.artifacts)})")
    ref = str(ref)
    st, ss = settings.infer, settings.serve
    host = host or ss.host
    port = ss.port if port is None else port
    chosen_backend = resolve_backend(ref, backend.value if backend else st.backend)   # a wrong one fails here
    n_threads, why = set_threads(threads or ss.threads)
    token = resolve_token(ss)

    def load():
        return Engine.load(ref, device=st.device, precision=st.precision, int8=st.int8 if int8 is None else int8,
                           batch_size=st.batch_size, max_length=settings.data.max_length, stride=settings.data.stride,
                           max_tokens=st.max_tokens, tokenize=st.tokenize, compile=st.compile,
                           backend=chosen_backend)

    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(e: BaseException) -> None:
        failure.append(e)
        if server is not None:
            server.should_exit = True

    app = create_app(load, ss, token=token, describe=lambda engine: model_info(ref, engine, threads=n_threads),
                     on_load_error=on_load_error)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=ss.access_log,
                                           timeout_graceful_shutdown=None))
    log = logging.getLogger("nerkd.serve")
    with _stderr_logs():
        shown = f"[{host}]" if ":" in host else host
        log.info("serve: %s (backend %s), %s; http://%s:%d (docs: /docs); %s", ref, chosen_backend,
                 describe_threads(n_threads, why), shown, port,
                 "bearer token required on /v1/*" if token else "no token")
        if token is None and not _loopback(host):
            log.warning("serve: listening on %s without a token: anyone who can reach this port can send texts; "
                        "set NERKD_SERVE_TOKEN", host)
        try:
            server.run()
        except KeyboardInterrupt:   # uvicorn re-raises Ctrl-C after its graceful shutdown: done, not an error
            pass
    if failure:
        raise failure[0]


@contextlib.contextmanager
def _stderr_logs():
    """uvicorn's and the server's logs (uvicorn's format, access log included) on stderr while serving;
    the loggers are restored afterwards. stdout carries nothing. Other ``nerkd`` loggers keep their own
    handler (the CLI's)."""
    import logging
    import sys

    from uvicorn.logging import AccessFormatter, DefaultFormatter

    default = logging.StreamHandler(sys.stderr)
    default.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    access = logging.StreamHandler(sys.stderr)
    access.setFormatter(AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'))
    saved = []
    for name, handler in (("uvicorn", default), ("uvicorn.access", access), ("nerkd.serve", default)):
        logger = logging.getLogger(name)
        saved.append((logger, handler, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handler, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
