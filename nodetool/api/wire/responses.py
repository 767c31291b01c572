"""`POST /v1/responses`: the request body and the `response` object (OpenAI's Responses API).

Input items, tools and `text.format` are checked item by item when they are mapped onto the
chat engine (`api/responses_wire.py`, each a 400 naming the field); here they are objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from nodetool.api.wire.common import OutModel, WireModel, one_message


class NamedFunctionChoice(WireModel):
    type: Literal["function"]
    name: str


ResponsesToolChoice = Annotated[
    Literal["none", "auto", "required"] | NamedFunctionChoice,
    one_message("expected 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}"),
]
Input = Annotated[
    str | Annotated[list[dict[str, Any]], Field(min_length=1)],
    one_message("expected a string or a non-empty array of input items (objects)"),
]


class ResponsesRequest(WireModel):
    """`POST /v1/responses` body (plus nodetool's `provider`)."""

    model_config = {"json_schema_extra": {"examples": [{"input": "Say hello."}]}}

    model: str | None = None
    input: Input = Field(
        description="a string, or items: messages (`role`, `content` as a string or "
        "`input_text`/`input_image` parts), `function_call` and `function_call_output`"
    )
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(None, description="function tools only")
    tool_choice: ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1)
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    stream: bool | None = False
    include: list[str] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = Field(None, description="not supported: only false")
    conversation: Any = Field(None, description="not supported")
    prompt: Any = Field(None, description="not supported")
    seed: int | None = None  # not in OpenAI's Responses API; honoured like chat completions
    provider: str | None = None
    # bookkeeping, accepted as OpenAI does
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None


class ResponseObject(OutModel):
    """A `response` object; streamed, server-sent `response.*` events carry it and its parts."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class DeletedResponse(OutModel):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class InputItemList(OutModel):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool
