"""OpenAI chat-completions wire format: the request model and the response/chunk builders.

Requests are validated once with pydantic (strict types, unknown fields ignored) and every
failure becomes a 400 `InvalidRequestError` naming the offending field in `param`. Responses
and stream chunks are built as plain strings/dicts and serialized directly: no model per chunk.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nodetool.api.request_id import random_hex
from nodetool.errors import InvalidRequestError
from nodetool.types.events import ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, FunctionCall, Message, ToolCall, ToolSpec

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # no cycles
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = ("system", "developer", "user", "assistant", "tool")
_TOOL_CHOICES = ("none", "auto", "required")


# ---- request ----------------------------------------------------------------------------


def _check_content(value: Any) -> Any:
    """A string, null, or an array of content parts (objects with a string `type`)."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError("expected a string or an array of content parts")
    for index, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ValueError(f"content part {index} must be an object with a string 'type'")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise ValueError(f"content part {index} of type 'text' needs a string 'text'")
    return value


def text_or_texts(value: Any) -> str | list[str]:
    """A string or an array of strings (token-id arrays are not supported)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("expected a string or an array of strings (token arrays are not supported)")


class WireToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    _content = field_validator("content")(_check_content)


class WireFunction(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOOL_NAME.match(value):
            raise ValueError("must match ^[a-zA-Z0-9_-]{1,64}$")
        return value


class WireTool(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["function"] = "function"
    function: WireFunction


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions` body (fields docs/protocol.md §3 lists, plus `provider`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[WireTool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    n: int | None = None
    provider: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # bookkeeping, accepted and not forwarded: nothing is stored for chat completions
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            if len(value) > 4:
                raise ValueError("at most 4 stop sequences are allowed")
            return value
        raise ValueError("expected a string or an array of strings")

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        if value is None or value in _TOOL_CHOICES:
            return value
        if isinstance(value, dict) and value.get("type") == "function":
            function = value.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                return value
        raise ValueError(
            "expected 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}'
        )

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: Any) -> Any:
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be 'text', 'json_object' or 'json_schema'")
        return value


def _param(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def request_error(exc: ValidationError) -> InvalidRequestError:
    """The first validation error as OpenAI would phrase it, with `param`."""
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    param = _param(tuple(error.get("loc", ())))
    if kind == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. "
            "(The API expects a JSON payload, but what was sent was not valid JSON.)"
        )
    if param is None:
        return InvalidRequestError("The request body must be a JSON object.", code="invalid_type")
    if kind == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind in _TYPE_NAMES:
        got = _json_type(error.get("input"))
        return InvalidRequestError(
            f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {got} instead.",
            param=param,
            code="invalid_type",
        )
    if kind == "too_short" and param == "messages":
        return InvalidRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=param,
            code="empty_array",
        )
    if kind == "literal_error" and param.endswith(".role"):
        supported = ", ".join(f"'{r}'" for r in _ROLES)
        return InvalidRequestError(
            f"Invalid value: {error.get('input')!r}. Supported values are: {supported}.",
            param=param,
            code="invalid_value",
        )
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return InvalidRequestError(f"Invalid '{param}': {message}.", param=param, code="invalid_value")


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Validate a request body; every problem is a 400 naming the field."""
    try:
        request = ChatCompletionRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise request_error(exc) from None
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequestError(
            "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    if request.n is not None and request.n != 1:
        raise InvalidRequestError(
            f"Invalid 'n': only n=1 is supported, got {request.n}.", param="n", code="invalid_value"
        )
    return request


def _message(index: int, wire: WireMessage) -> Message:
    role, content = wire.role, wire.content
    where = f"messages[{index}]"
    calls = None
    if role == "tool":
        if wire.tool_call_id is None:
            raise InvalidRequestError(
                f"Missing required parameter: '{where}.tool_call_id'.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
    elif role == "assistant":
        if wire.tool_calls:
            calls = [
                ToolCall.model_construct(id=c.id, type="function", function=c.function)
                for c in wire.tool_calls
            ]
        elif content is None:
            raise InvalidRequestError(
                f"Missing required parameter: '{where}.content'.",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
    if content is None and role != "assistant":
        raise InvalidRequestError(
            f"Missing required parameter: '{where}.content'.",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    return Message.model_construct(
        role="system" if role == "developer" else role,
        content=content,
        name=wire.name,
        tool_calls=calls,
        tool_call_id=wire.tool_call_id,
    )


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    return [_message(i, m) for i, m in enumerate(request.messages)]


def to_tool_specs(request: ChatCompletionRequest) -> list[ToolSpec]:
    specs = []
    for tool in request.tools or ():
        fn = tool.function
        specs.append(
            ToolSpec(
                name=fn.name,
                description=fn.description or "",
                parameters=fn.parameters or {"type": "object", "properties": {}},
            )
        )
    return specs


def to_options(request: ChatCompletionRequest) -> ChatOptions:
    stop = request.stop
    return ChatOptions.model_construct(
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        stop=[stop] if isinstance(stop, str) else stop,
        seed=request.seed,
        response_format=request.response_format,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        user=request.user,
        stream=bool(request.stream),
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs,
        reasoning_effort=request.reasoning_effort,
        verbosity=request.verbosity,
    )


def gated_fields(request: ChatCompletionRequest) -> dict[str, Any]:
    """The request's fields that not every provider honours (see providers.base.check_fields)."""
    return {
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "response_format": request.response_format,
        "tool_choice": request.tool_choice,
        "seed": request.seed,
        "stop": request.stop,
    }


# ---- responses --------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + random_hex(28)


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }


def completion_body(
    cid: str,
    model: str,
    content: str | None,
    tool_calls: list[ToolCall] | None,
    finish_reason: str,
    usage: Usage | None,
    logprobs: list[dict[str, Any]] | None = None,
) -> bytes:
    """A `chat.completion` object, serialized."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [_call_dict(call) for call in tool_calls]
    body = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
        "usage": (usage or Usage()).as_dict(),
        "system_fingerprint": None,
    }
    return _dumps(body).encode()


class ChunkEncoder:
    """Builds one stream's `data: {chat.completion.chunk}` events (stable id, model, created).

    The invariant part of every chunk is formatted once; a content chunk costs one string
    escape and one concatenation.
    """

    __slots__ = (
        "_head",
        "_tail",
        "_finish_tail",
        "_seen",
        "_created",
        "cid",
        "model",
        "include_usage",
    )

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.cid = cid
        self.model = model
        self._created = int(time.time())
        self.include_usage = include_usage
        self._head = (
            f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{self._created},'
            f'"model":{_quote(model)},"system_fingerprint":null,"choices":[{{"index":0,"delta":'
        )
        usage_field = ',"usage":null' if include_usage else ""
        self._tail = f',"logprobs":null,"finish_reason":null}}]{usage_field}}}\n\n'
        self._finish_tail = usage_field + "}\n\n"
        self._seen: set[int] = set()

    def role(self) -> str:
        return self._head + '{"role":"assistant","content":"","refusal":null}' + self._tail

    def content(self, text: str) -> str:
        return self._head + '{"content":' + _quote(text) + "}" + self._tail

    def content_logprobs(self, text: str, logprobs: list[dict[str, Any]]) -> str:
        """A content chunk carrying its tokens' log probabilities."""
        choice = _dumps({"content": logprobs, "refusal": None})
        tail = self._tail.replace('"logprobs":null', '"logprobs":' + choice, 1)
        return self._head + '{"content":' + _quote(text) + "}" + tail

    def tool_call(self, delta: ToolCallDelta) -> str:
        index = delta.index
        arguments = _quote(delta.arguments)
        if index in self._seen:
            call = f'{{"index":{index},"function":{{"arguments":{arguments}}}}}'
        else:
            self._seen.add(index)
            call_id = _quote(delta.id or "call_" + secrets.token_hex(12))
            name = _quote(delta.name or "")
            call = (
                f'{{"index":{index},"id":{call_id},"type":"function",'
                f'"function":{{"name":{name},"arguments":{arguments}}}}}'
            )
        return self._head + '{"tool_calls":[' + call + "]}" + self._tail

    def finish(self, reason: str) -> str:
        return (
            self._head
            + '{},"logprobs":null,"finish_reason":'
            + _quote(reason)
            + "}]"
            + self._finish_tail
        )

    def usage(self, usage: Usage | None) -> str:
        body = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": (usage or Usage()).as_dict(),
        }
        return "data: " + _dumps(body) + "\n\n"


def model_entry(
    model_id: str,
    created: int,
    owned_by: str,
    unavailable: str | None = None,
    capabilities: list[str] | None = None,
) -> dict[str, Any]:
    """An OpenAI model object; our extensions: `unavailable` says why it cannot serve now,
    `capabilities` what it serves ("chat", "embeddings")."""
    entry: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
    }
    if unavailable:
        entry["unavailable"] = unavailable
    if capabilities is not None:
        entry["capabilities"] = capabilities
    return entry


def dumps(value: Any) -> bytes:
    return _dumps(value).encode()
