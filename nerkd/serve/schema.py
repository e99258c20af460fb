"""What a request to ``nerkd serve`` may be: the request and response models (the OpenAPI schema) and
the limits a request's texts are checked against (``serve.max_texts``, ``serve.max_chars``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from nerkd.serve.errors import ApiError
from nerkd.settings import ServeSettings


def _text_id(value: Any) -> Any:
    """An id is a string or a 64-bit signed integer (what JSON tools and databases round-trip): 10**30 is refused
    here (a 422), not when the answer is written (a 500); a bool or a float is no id."""
    if isinstance(value, str) or (type(value) is int and -(2**63) <= value < 2**63):
        return value
    raise ValueError("an id is a string or an integer from -2**63 to 2**63-1")


TextId = Annotated[str | int, BeforeValidator(_text_id)]


class EntitiesRequest(BaseModel):
    """One text, or a list of texts with optional ids (returned with their results)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Mme Lefèvre a quitté le CHU de Lyon."},
        {"texts": ["Mme Lefèvre a quitté le CHU de Lyon.", "RAS."], "ids": ["note-1", "note-2"]},
    ]})

    text: str | None = Field(None, description="one text (answer: {\"entities\": [...]})")
    texts: list[str] | None = Field(None, description="several texts (answer: {\"results\": [...]}, same order)")
    ids: list[TextId] | None = Field(None, description="one id per text of `texts` (a string or a 64-bit integer), "
                                                         "echoed in its result")

    @model_validator(mode="after")
    def _one_form(self) -> EntitiesRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give either "text" or "texts"')
        if self.ids is not None:
            if self.texts is None:
                raise ValueError('"ids" goes with "texts"')
            if len(self.ids) != len(self.texts):
                raise ValueError(f'{len(self.ids)} ids for {len(self.texts)} texts')
        return self


class Entity(BaseModel):
    start: int = Field(description="character offset of the first character (text[start:end] == entity text)")
    end: int = Field(description="character offset after the last character")
    label: str = Field(description="entity type, e.g. PER, LOC, ORG")
    text: str
    score: float = Field(description="mean (or min, with infer's --score min) probability of its words' tags")


class EntitiesResponse(BaseModel):
    entities: list[Entity]


class TextResult(BaseModel):
    id: str | int | None = Field(None, description="the request's id for this text (absent without ids)")
    entities: list[Entity]


class BatchResponse(BaseModel):
    results: list[TextResult]


class ErrorBody(BaseModel):
    error: str
    request_id: str
    details: list[dict[str, Any]] | None = Field(None, description="422 only: where the request is wrong")


class Health(BaseModel):
    status: str = Field(description="ok, loading, error or shutting down")


ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 500, 503)}


def request_texts(body: EntitiesRequest, st: ServeSettings) -> list[str]:
    """The request's texts, in order; :class:`ApiError` 413 over ``serve.max_texts`` or ``serve.max_chars``,
    422 for a text that is not valid Unicode (an unpaired surrogate, which JSON allows)."""
    single = body.text is not None
    texts = [body.text] if single else body.texts
    if len(texts) > st.max_texts:
        raise ApiError(413, f"{len(texts)} texts in one request, over the limit of {st.max_texts} "
                            f"(serve.max_texts)")
    for i, text in enumerate(texts):
        where = "text" if single else f"texts.{i}"
        if len(text) > st.max_chars:
            raise ApiError(413, f"{where}: {len(text)} characters, over the limit of {st.max_chars} "
                                f"(serve.max_chars)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{where}: not valid Unicode (an unpaired surrogate)") from None
    return texts
