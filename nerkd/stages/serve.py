"""``nerkd serve``: the model of ``nerkd infer`` behind HTTP, run by uvicorn until Ctrl-C or SIGTERM.

:func:`run_serve` picks the model (the newest distill, prune or finetune output), the backend, the
threads and the token, builds the app (:func:`nerkd.serve.app.create_app`) around a loader of the
engine (:func:`nerkd.infer.load_engine`, the ``infer`` settings), and runs uvicorn with its
logs and the server's on stderr (:func:`stderr_logs`). Nothing is printed; stdout stays empty.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerkd.stages.infer import resolve_model

if TYPE_CHECKING:
    from nerkd.infer.backend import BackendChoice
    from nerkd.project import Project
    from nerkd.settings import InferSettings, Settings


def run_serve(settings: Settings, project: Project, model: str | Path | None = None, *, host: str | None = None,
              port: int | None = None, backend: str | None = None, int8: bool | None = None,
              threads: int | None = None, logs: bool = True) -> None:
    """Serve ``model`` (default: the newest stage output) until Ctrl-C or SIGTERM.

    ``host``/``port``/``threads`` default to ``serve.*`` (threads: else the physical cores), ``backend``
    and ``int8`` to ``infer.*``. A model that fails to load stops the server and is raised here.
    ``logs``: uvicorn's and the server's log lines on stderr while serving (False: your own logging)."""
    from nerkd.serve import require_extra

    require_extra()   # before fastapi or uvicorn is imported: one line naming the extra
    import uvicorn

    from nerkd.infer.backend import choose_backend
    from nerkd.serve.app import create_app, resolve_token
    from nerkd.serve.info import model_info
    from nerkd.serve.server import DrainingServer
    from nerkd.stages.redact import read_key
    from nerkd.threads import describe_threads, set_threads

    ref = str(resolve_model(model, project, settings.paths.artifacts, purpose="serve"))
    ss = settings.serve
    host, port = host or ss.host, ss.port if port is None else port
    section = settings.infer.model_copy(update={"backend": backend or settings.infer.backend,
                                                **({} if int8 is None else {"int8": int8})})
    choice = choose_backend(ref, section)   # a wrong backend fails here; its line is the first one
    n_threads, why = set_threads(threads or ss.threads)
    token = resolve_token(ss)
    key = read_key(Path(settings.redact.key_file)) if settings.redact.key_file else None   # for /v1/redact
    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(e: BaseException) -> None:
        failure.append(e)
        if server is not None:
            server.should_exit = True

    app = create_app(engine_loader(ref, settings, section, choice), ss, token=token,
                     describe=lambda engine: model_info(ref, engine, threads=n_threads), on_load_error=on_load_error,
                     redact=settings.redact, key=key)
    server = DrainingServer(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=ss.access_log,
                                           timeout_graceful_shutdown=None), app.state.nerkd, ss.drain_timeout_s)
    with stderr_logs() if logs else contextlib.nullcontext():
        _announce(f"{ref} ({choice.line or f'backend {choice.backend}'}), {describe_threads(n_threads, why)}", host,
                  port, token)
        try:
            server.run()
        except KeyboardInterrupt:   # uvicorn re-raises Ctrl-C after its graceful shutdown: done, not an error
            pass
    if failure:
        raise failure[0]


def engine_loader(ref: str, settings: Settings, section: InferSettings, choice: BackendChoice) -> Callable[[], Any]:
    """What the server's loader thread calls: the engine of ``nerkd infer``'s settings (``section``: the ``infer``
    section with the command's backend and int8) on the runtime ``choice`` (said in the server's first line)."""

    def load():
        from nerkd.infer import load_engine

        return load_engine(ref, section, max_length=settings.data.max_length, stride=settings.data.stride,
                           choice=choice)

    return load


def _announce(what: str, host: str, port: int, token: str | None) -> None:
    """The server's first log lines: what it serves, where, and whether a token guards it."""
    log = logging.getLogger("nerkd.serve")
    shown = f"[{host}]" if ":" in host else host
    log.info("serve: %s; http://%s:%d (docs: /docs); %s", what, shown, port,
             "bearer token required on /v1/*" if token else "no token")
    if token is None and not _loopback(host):
        log.warning("serve: listening on %s without a token: anyone who can reach this port can send texts; "
                    "set NERKD_SERVE_TOKEN", host)


@contextlib.contextmanager
def stderr_logs() -> Iterator[None]:
    """uvicorn's and the server's logs (uvicorn's format, access log included) on stderr while serving;
    the loggers are restored afterwards. stdout carries nothing. Other ``nerkd`` loggers keep their own
    handler (the CLI's)."""
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
