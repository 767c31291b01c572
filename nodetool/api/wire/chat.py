"""`POST /v1/chat/completions`: the request (messages and content parts as discriminated
unions), the `chat.completion` object and its stream chunks, and the model list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from nodetool.api.wire.common import One, OutModel, StreamOptions, Usage, WireModel, one_message

TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

# ---- content parts ------------------------------------------------------------------------


class TextPart(WireModel, extra="allow"):
    type: Literal["text"]
    text: str


class ImageUrl(WireModel, extra="allow"):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(WireModel, extra="allow"):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(WireModel, extra="allow"):
    data: str
    format: str


class AudioPart(WireModel, extra="allow"):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(WireModel, extra="allow"):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(WireModel, extra="allow"):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]

# ---- messages -----------------------------------------------------------------------------


class FunctionCallWire(WireModel):
    name: str
    arguments: str = "{}"


class ToolCallWire(WireModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallWire


class SystemMessage(WireModel):
    role: Literal["system", "developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(WireModel):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(WireModel):
    """Content, tool calls, or both."""

    model_config = {
        "json_schema_extra": {
            "anyOf": [
                {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
                {
                    "required": ["tool_calls"],
                    "properties": {"tool_calls": {"type": "array", "minItems": 1}},
                },
            ]
        }
    }

    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallWire] | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ToolMessage(WireModel):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str
    name: str | None = None


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]

# ---- tools --------------------------------------------------------------------------------


class FunctionSpec(WireModel):
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolWire(WireModel):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(WireModel):
    name: str


class NamedToolChoice(WireModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Literal["none", "auto", "required"] | NamedToolChoice,
    one_message(
        "expected 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}'
    ),
]
Stop = Annotated[
    str | Annotated[list[str], Field(max_length=4)],
    one_message("expected a string or an array of at most 4 strings"),
]


class ResponseFormat(WireModel, extra="allow"):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(WireModel):
    """`POST /v1/chat/completions` body (fields docs/protocol.md §3 lists, plus `provider`)."""

    model_config = {
        "json_schema_extra": {  # what `_top_logprobs` checks
            "if": {
                "required": ["top_logprobs"],
                "properties": {"top_logprobs": {"type": "integer", "minimum": 1}},
            },
            "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
            "examples": [{"messages": [{"role": "user", "content": "Say hello."}]}],
        }
    }

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: Stop | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolWire] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    n: One | None = Field(None, description="only 1 is supported")
    provider: str | None = Field(
        None, description="route to this provider; it must be configured on the server"
    )
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20, description="needs `logprobs: true`")
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # bookkeeping, accepted and not forwarded: nothing is stored for chat completions
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("'logprobs' must be set to true when 'top_logprobs' is used")
        return value


# ---- responses ----------------------------------------------------------------------------


class ToolCallOut(OutModel):
    id: str
    type: Literal["function"]
    function: FunctionCallWire


class AssistantReply(OutModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class Logprobs(OutModel):
    content: list[dict[str, Any]] | None
    refusal: list[dict[str, Any]] | None = None


class Choice(OutModel):
    index: int
    message: AssistantReply
    logprobs: Logprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(OutModel):
    """The `chat.completion` object (`stream` false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ToolCallDeltaOut(OutModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str]


class Delta(OutModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


class ChunkChoice(OutModel):
    index: int
    delta: Delta
    logprobs: Logprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(OutModel):
    """One `data:` event of a streamed completion (the last, with `include_usage`, has no
    choices and the usage)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelEntry(OutModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    unavailable: str | None = Field(None, description="why it cannot serve now")
    capabilities: list[str] | None = Field(None, description='"chat", "embeddings"')


class ModelList(OutModel):
    object: Literal["list"]
    data: list[ModelEntry]
