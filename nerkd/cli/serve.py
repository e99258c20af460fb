from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nerkd.cli.common import (
    Backend,
    ConfigOpt,
    Int8Opt,
    ModelOpt,
    SetOpt,
    backend_option,
    resolve,
    threads_option,
)
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError

if TYPE_CHECKING:
    from nerkd.settings import Settings


@known_errors
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to bind. Default: serve.host (127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535, help="Default: serve.port (8000).")
                    ] = None,
    backend: Annotated[Backend | None, backend_option(
        "torch, or onnx (ONNX Runtime on CPU) for a folder written by nerkd export --format onnx. "
        "Default: infer.backend (auto: onnx for such a folder).")] = None,
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
    settings, project = resolve(config, set_)
    ref = model or project.default_input("infer", settings.paths.artifacts)
    if ref is None:
        raise NerkdError(f"no model to serve: give --model FOLDER (no distill, prune or finetune output found "
                         f"under {project.artifacts(settings.paths.artifacts)})")
    _serve(str(ref), settings, host=host, port=port, backend=backend.value if backend else None, int8=int8,
           threads=threads)


def _serve(ref: str, settings: Settings, *, host: str | None, port: int | None, backend: str | None,
           int8: bool | None, threads: int | None) -> None:
    """Serve ``ref`` until Ctrl-C or SIGTERM; a model that fails to load stops the server and is raised here."""
    import uvicorn

    from nerkd.infer.onnx_backend import resolve_backend
    from nerkd.serve.app import create_app, resolve_token
    from nerkd.serve.info import model_info
    from nerkd.threads import describe_threads, set_threads

    st, ss = settings.infer, settings.serve
    host = host or ss.host
    port = ss.port if port is None else port
    chosen_backend = resolve_backend(ref, backend or st.backend)   # a wrong one fails here
    n_threads, why = set_threads(threads or ss.threads)
    token = resolve_token(ss)
    load = _loader(ref, settings, chosen_backend, int8)
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
    with _stderr_logs():
        _announce(f"{ref} (backend {chosen_backend}), {describe_threads(n_threads, why)}", host, port, token)
        try:
            server.run()
        except KeyboardInterrupt:   # uvicorn re-raises Ctrl-C after its graceful shutdown: done, not an error
            pass
    if failure:
        raise failure[0]


def _loader(ref: str, settings: Settings, backend: str, int8: bool | None) -> Callable[[], Any]:
    """What the server's loader thread calls: the engine of ``nerkd infer``'s settings (``--int8`` over infer.int8)."""
    from nerkd.infer import Engine

    st = settings.infer

    def load():
        return Engine.load(ref, device=st.device, precision=st.precision, int8=st.int8 if int8 is None else int8,
                           batch_size=st.batch_size, max_length=settings.data.max_length, stride=settings.data.stride,
                           max_tokens=st.max_tokens, tokenize=st.tokenize, compile=st.compile, backend=backend)

    return load


def _announce(what: str, host: str, port: int, token: str | None) -> None:
    """The server's first log lines: what it serves, where, and whether a token guards it."""
    import logging

    log = logging.getLogger("nerkd.serve")
    shown = f"[{host}]" if ":" in host else host
    log.info("serve: %s; http://%s:%d (docs: /docs); %s", what, shown, port,
             "bearer token required on /v1/*" if token else "no token")
    if token is None and not _loopback(host):
        log.warning("serve: listening on %s without a token: anyone who can reach this port can send texts; "
                    "set NERKD_SERVE_TOKEN", host)


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
