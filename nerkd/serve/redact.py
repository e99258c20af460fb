"""``POST /v1/redact``: the texts of ``/v1/entities``' body, pseudonymised as ``nerkd redact`` does.

The body is that of ``/v1/entities`` (``{"text"}`` or ``{"texts", "ids"?}``), with two optional fields over
the served settings (``redact.*``): ``mode`` (placeholder, mask, surrogate) and ``bias`` (the logit offset
against ``O``). The answer is ``nerkd redact``'s line without its id: ``{"text": <redacted>, "replacements":
[{start, end, label, source}]}`` (offsets in the redacted text), or ``{"results": [{"id"?, "text",
"replacements"}]}``. The mapping (the original values) is never sent: a server never holds it.

The texts go through the micro-batcher with their bias as the batch key (requests with one bias share a
forward pass), then through a :class:`nerkd.redact.Redactor` of the served settings and key (one per
mode, built at the first request that needs it) in a worker thread. Same limits, errors and auth as
``/v1/entities``; a server without the ``redact`` extra answers 501 with the pip command.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from nerkd.errors import MissingExtraError
from nerkd.serve.errors import ApiError, json_response
from nerkd.serve.routes import predict_texts
from nerkd.serve.schema import ERRORS, EntitiesRequest, ErrorBody, request_texts

if TYPE_CHECKING:
    from nerkd.redact import Redactor
    from nerkd.serve.state import ServeState
    from nerkd.settings import RedactSettings, ServeSettings

Mode = Literal["placeholder", "mask", "surrogate"]
MODES: tuple[str, ...] = Mode.__args__


class RedactRequest(EntitiesRequest):
    """The body of ``/v1/entities``, and optionally the mode and bias of this request."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Mme Lefèvre (06 12 34 56 78) a quitté le CHU de Lyon."},
        {"texts": ["Mme Lefèvre a quitté le CHU de Lyon.", "RAS."], "ids": ["note-1", "note-2"],
         "mode": "surrogate", "bias": 3},
    ]})

    mode: Mode | None = Field(None, description="placeholder ([PER_1]), mask ([PER]) or surrogate (realistic "
                                                "fake values); default: the server's redact.mode")
    bias: float | None = Field(None, ge=-20, le=20, description="logit offset against O when decoding (higher: "
                                                                "more words replaced); default: redact.bias")


class Replacement(BaseModel):
    start: int = Field(description="character offset in the redacted text")
    end: int
    label: str = Field(description="PER, LOC, ORG... or an identifier found by rules (PHONE, EMAIL, NIR...)")
    source: Literal["model", "rule"]


class RedactResponse(BaseModel):
    text: str = Field(description="the redacted text")
    replacements: list[Replacement]


class RedactTextResult(RedactResponse):
    id: str | int | None = Field(None, description="the request's id for this text (absent without ids)")


class RedactBatchResponse(BaseModel):
    results: list[RedactTextResult]


class Redactors:
    """One :class:`~nerkd.redact.Redactor` per mode, over the served ``redact`` settings and key, built when
    first needed (a missing extra is a 501 for ``/v1/redact`` only: ``/v1/entities`` works without it)."""

    def __init__(self, settings: RedactSettings, key: bytes | None = None):
        self.settings, self.key = settings, key
        self._made: dict[str, Redactor] = {}
        self._lock = threading.Lock()

    def get(self, mode: str) -> Redactor:
        from nerkd.redact import Redactor

        with self._lock:
            if mode not in self._made:
                try:
                    self._made[mode] = Redactor(self.settings.model_copy(update={"mode": mode}), self.key)
                except MissingExtraError as e:
                    raise ApiError(501, f"/v1/redact: {e}") from None
            return self._made[mode]


def add_redact_route(app: FastAPI, state: ServeState, st: ServeSettings, redactors: Redactors,
                     authorized: Callable) -> None:
    @app.post("/v1/redact", response_model=RedactResponse | RedactBatchResponse,
              responses={**ERRORS, 501: {"model": ErrorBody}}, dependencies=[Depends(authorized)], tags=["redact"])
    async def redact(body: RedactRequest) -> Response:
        """One text (`{"text"}` -> `{"text", "replacements"}`) or several (`{"texts", "ids"?}` -> `{"results"}`),
        pseudonymised as `nerkd redact` writes them; `mode` and `bias` override the server's settings. The mapping
        to the original values is never sent."""
        texts = request_texts(body, st)
        redactor = redactors.get(body.mode or redactors.settings.mode)
        bias = float(redactors.settings.bias if body.bias is None else body.bias)
        entities = await predict_texts(state, texts, key=bias)
        results = await asyncio.to_thread(lambda: [redactor.redact(t, e).to_json()
                                                   for t, e in zip(texts, entities, strict=True)])
        if body.text is not None:
            return json_response(200, results[0])
        ids = body.ids
        return json_response(200, {"results": [{"id": ids[i], **r} if ids is not None else r
                                               for i, r in enumerate(results)]})

