"""`POST /v1/completions` (legacy raw-prompt completions) and `POST /v1/embeddings`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from nodetool.api.wire.chat import Stop
from nodetool.api.wire.common import One, OutModel, StreamOptions, WireModel, one_message

Texts = Annotated[
    str | Annotated[list[str], Field(min_length=1)],
    one_message("expected a string or an array of strings (token arrays are not supported)"),
]
_Text = Annotated[str, Field(min_length=1)]
NonEmptyTexts = Annotated[
    _Text | Annotated[list[_Text], Field(min_length=1)],
    one_message(
        "expected a non-empty string or a non-empty array of non-empty strings "
        "(token arrays are not supported)"
    ),
]


class CompletionRequest(WireModel):
    """`POST /v1/completions` body (plus nodetool's `provider`)."""

    model_config = {"json_schema_extra": {"examples": [{"prompt": "Once upon a time"}]}}

    model: str | None = None
    prompt: Texts
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: Stop | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    n: One | None = Field(None, description="only 1 is supported")
    best_of: One | None = Field(None, description="only 1 is supported")
    suffix: Literal[""] | None = Field(None, description="not supported")
    user: str | None = None
    provider: str | None = None


class LegacyLogprobsOut(OutModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(OutModel):
    index: int
    text: str
    logprobs: LegacyLogprobsOut | None = None
    finish_reason: str | None


class TextCompletion(OutModel):
    """A `text_completion` object; streamed, each `data:` event is one (usage last)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: dict[str, int] | None = None
    system_fingerprint: str | None = None


class EmbeddingRequest(WireModel):
    """`POST /v1/embeddings` body (plus nodetool's `provider`)."""

    model_config = {"json_schema_extra": {"examples": [{"input": ["alpha", "beta"]}]}}

    model: str | None = None
    input: NonEmptyTexts
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, ge=1, le=16384, description="at most 16384 (more than any embedding model has)"
    )
    user: str | None = None
    provider: str | None = None


class Embedding(OutModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 little-endian float32")


class EmbeddingUsage(OutModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(OutModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
