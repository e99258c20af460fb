"""The endpoints of ``nerkd serve``, each group registered by one function: ``GET /health`` and
``GET /v1/stats`` (the service), ``GET /v1/model``, ``POST /v1/entities``; and the bearer-token check of
``/v1/*``."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from collections.abc import Callable

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nerkd.serve.batcher import QueueClosed, QueueFull
from nerkd.serve.errors import ApiError, json_response
from nerkd.serve.schema import ERRORS, BatchResponse, EntitiesRequest, EntitiesResponse, Health, request_texts
from nerkd.serve.state import ServeState
from nerkd.settings import ServeSettings


def bearer_check(token: str | None) -> Callable:
    """The dependency of ``/v1/*``: nothing without a token, else a 401 unless ``Authorization: Bearer <token>``."""
    bearer = HTTPBearer(auto_error=False, description="the server's token (serve.token or NERKD_SERVE_TOKEN)")

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})

    return authorized


def add_health_route(app: FastAPI, state: ServeState) -> None:
    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    async def health() -> Response:
        """200 once the model is loaded and the server takes requests; 503 otherwise."""
        status = state.status()
        return json_response(200 if status == "ok" else 503, {"status": status})


def add_model_route(app: FastAPI, state: ServeState, st: ServeSettings, authorized: Callable) -> None:
    @app.get("/v1/model", responses=ERRORS, dependencies=[Depends(authorized)], tags=["model"])
    async def model_description() -> Response:
        """Labels, entity types, parameters, nerkd version, the weights' sha256, runtime and limits."""
        state.ready_batcher()
        return json_response(200, {**state.info, "limits": {
            "max_body_bytes": st.max_body_bytes, "max_texts": st.max_texts, "max_chars": st.max_chars},
            "batching": {"max_batch_words": st.max_batch_words, "max_wait_ms": st.max_wait_ms}})


def add_stats_route(app: FastAPI, state: ServeState, authorized: Callable) -> None:
    @app.get("/v1/stats", responses=ERRORS, dependencies=[Depends(authorized)], tags=["service"])
    async def batching_stats() -> Response:
        """Counters since the model loaded: requests, texts, words and batches served (mean requests per batch),
        failed and cancelled requests, texts waiting now."""
        batcher = state.ready_batcher()
        stats = dataclasses.asdict(batcher.stats)
        stats["mean_requests_per_batch"] = round(stats["requests"] / stats["batches"], 2) if stats["batches"] else 0.0
        return json_response(200, {**stats, "queued_texts": batcher.queued,
                                   "uptime_s": round(time.perf_counter() - state.loaded_at, 1)})


def add_entities_route(app: FastAPI, state: ServeState, st: ServeSettings, authorized: Callable) -> None:
    @app.post("/v1/entities", response_model=EntitiesResponse | BatchResponse, responses=ERRORS,
              dependencies=[Depends(authorized)], tags=["entities"])
    async def entities(body: EntitiesRequest) -> Response:
        """Entities of one text (`{"text"}` -> `{"entities"}`) or of several (`{"texts", "ids"?}` -> `{"results"}`),
        exactly as `nerkd infer` writes them."""
        texts = request_texts(body, st)
        results = await predict_texts(state, texts)
        if body.text is not None:
            return json_response(200, {"entities": results[0]})
        ids = body.ids
        out = [{"id": ids[i], "entities": ents} if ids is not None else {"entities": ents}
               for i, ents in enumerate(results)]
        return json_response(200, {"results": out})


async def predict_texts(state: ServeState, texts: list[str], key: object = None) -> list[list[dict]]:
    """The entities of ``texts`` through the micro-batcher (a 503 when it is not ready, closed or full); ``key``:
    the batch key (``/v1/redact``'s bias, :mod:`nerkd.serve.batcher`)."""
    batcher = state.ready_batcher()
    if not texts:
        return []
    try:
        future = batcher.submit(texts, key=key)
    except QueueClosed:
        raise ApiError(503, "the server is shutting down") from None
    except QueueFull:
        raise ApiError(503, "the server is busy: retry shortly", {"Retry-After": "1"}) from None
    return await asyncio.wrap_future(future)
