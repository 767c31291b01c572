"""OpenAI chat-completions wire format: request parsing and mapping, response/chunk builders.

Requests are validated once against `api/wire/chat.ChatCompletionRequest` (strict types,
unknown fields ignored) and every failure becomes a 400 `InvalidRequestError` naming the
offending field in `param`. Responses and stream chunks are built as plain strings/dicts and
serialized directly (no model per chunk); `api/wire/chat` documents their shapes.
"""

from __future__ import annotations

import json
import secrets
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from nodetool.api.request_id import random_hex
from nodetool.api.wire.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ToolMessage,
)
from nodetool.api.wire.problems import parse_body
from nodetool.types.events import ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, FunctionCall, Message, ToolCall, ToolSpec
from nodetool.types.trusted import trusted

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # no cycles


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Validate a request body; every problem is a 400 naming the field."""
    return parse_body(ChatCompletionRequest, body)


def _content(content: Any) -> Any:
    """Content as the engine keeps it: the string, or the parts as plain dicts."""
    if content is None or isinstance(content, str):
        return content
    return [part.model_dump(exclude_unset=True) for part in content]


def _message(wire: ChatMessage) -> Message:
    calls = None
    if type(wire) is AssistantMessage and wire.tool_calls:
        calls = [
            trusted(
                ToolCall,
                {
                    "id": c.id,
                    "type": "function",
                    "function": trusted(
                        FunctionCall, {"name": c.function.name, "arguments": c.function.arguments}
                    ),
                },
            )
            for c in wire.tool_calls
        ]
    role = wire.role
    return trusted(
        Message,
        {
            "role": "system" if role == "developer" else role,
            "content": _content(wire.content),
            "name": wire.name,
            "tool_calls": calls,
            "tool_call_id": wire.tool_call_id if type(wire) is ToolMessage else None,
        },
    )


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    return [_message(m) for m in request.messages]


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
    choice = request.tool_choice
    response_format = request.response_format
    return trusted(
        ChatOptions,
        {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_completion_tokens or request.max_tokens,
            "stop": [stop] if isinstance(stop, str) else stop,
            "seed": request.seed,
            "response_format": None
            if response_format is None
            else response_format.model_dump(exclude_unset=True),
            "tool_choice": choice
            if choice is None or isinstance(choice, str)
            else choice.model_dump(),
            "parallel_tool_calls": request.parallel_tool_calls,
            "user": request.user,
            "logprobs": request.logprobs,
            "top_logprobs": request.top_logprobs,
            "reasoning_effort": request.reasoning_effort,
            "verbosity": request.verbosity,
            "stream": bool(request.stream),
        },
    )


def gated_fields(request: ChatCompletionRequest, options: ChatOptions) -> dict[str, Any]:
    """The request's fields that not every provider honours (see providers.base.check_fields)."""
    return {
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "response_format": options.response_format,
        "tool_choice": options.tool_choice,
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
    """A `chat.completion` object, serialized (formatted directly: the same bytes as dumping
    the object compactly, without building it)."""
    calls = ',"tool_calls":' + _dumps([_call_dict(c) for c in tool_calls]) if tool_calls else ""
    choice_logprobs = "null" if logprobs is None else _dumps({"content": logprobs, "refusal": None})
    return (
        f'{{"id":{_quote(cid)},"object":"chat.completion","created":{int(time.time())},'
        f'"model":{_quote(model)},"choices":[{{"index":0,"message":{{"role":"assistant",'
        f'"content":{"null" if content is None else _quote(content)},"refusal":null{calls}}},'
        f'"logprobs":{choice_logprobs},"finish_reason":{_quote(finish_reason)}}}],'
        f'"usage":{usage_json(usage)},"system_fingerprint":null}}'
    ).encode()


def usage_json(usage: Usage | None) -> str:
    """A usage object, serialized (zeros when the upstream sent none)."""
    if usage is None:
        return '{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
    prompt, completion = int(usage.prompt_tokens), int(usage.completion_tokens)
    return (
        f'{{"prompt_tokens":{prompt},"completion_tokens":{completion},'
        f'"total_tokens":{prompt + completion}}}'
    )


class ChunkEncoder:
    """Builds one stream's `data: {chat.completion.chunk}` events (stable id, model, created).

    The invariant part of every chunk is formatted once; a content chunk costs one string
    escape and one concatenation.
    """

    __slots__ = (
        "_head",
        "_tail",
        "_content_head",
        "_content_tail",
        "_between",
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
        self._content_head = self._head + '{"content":'
        self._content_tail = "}" + self._tail
        self._between = self._content_tail + self._content_head
        self._seen: set[int] = set()

    def role(self) -> str:
        return self._head + '{"role":"assistant","content":"","refusal":null}' + self._tail

    def content(self, text: str) -> str:
        return self._content_head + _quote(text) + self._content_tail

    def contents(self, texts: list[str]) -> str:
        """The content chunks of `texts`, one after the other (`content` of each, joined)."""
        return self._content_head + self._between.join(map(_quote, texts)) + self._content_tail

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
