"""OpenAI Responses wire format (`POST /v1/responses`): the request (`api/wire/responses`) mapped
onto the chat engine's messages, tools and options.

Shapes follow the openai SDK's `openai.types.responses` types. Every problem is a 400 naming
the field in `param` (the same phrasing as chat completions); fields that would change the
request's meaning but cannot be honoured here (`background`, `conversation`, `prompt`,
reasoning summaries, non-function tools, file inputs) are refused by name, never dropped.
`reasoning.effort` and `text.verbosity` are hints passed to providers that take them.
"""

from __future__ import annotations

import json
from os import urandom
from typing import Any

from nodetool.api.wire.problems import parse_body
from nodetool.api.wire.responses import ResponsesRequest
from nodetool.errors import InvalidRequestError
from nodetool.types.messages import ChatOptions, FunctionCall, Message, ToolCall, ToolSpec
from nodetool.types.trusted import trusted

LOGPROBS_INCLUDE = "message.output_text.logprobs"
_UNSUPPORTED = ("background", "conversation", "prompt")


def new_id(prefix: str) -> str:
    return f"{prefix}_{urandom(24).hex()}"  # what secrets.token_hex(24) returns


def parse_request(body: bytes) -> ResponsesRequest:
    request = parse_body(ResponsesRequest, body)
    for name in _UNSUPPORTED:
        if getattr(request, name) not in (None, False):
            raise InvalidRequestError(
                f"'{name}' is not supported by this server.",
                param=name,
                code="unsupported_parameter",
            )
    reasoning = request.reasoning or {}
    if reasoning.get("summary") not in (None, "auto") or reasoning.get("generate_summary"):
        raise InvalidRequestError(
            "Reasoning summaries are not supported by this server.",
            param="reasoning.summary",
            code="unsupported_parameter",
        )
    effort = reasoning.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequestError(
            "Invalid 'reasoning.effort': expected a string.", param="reasoning.effort"
        )
    return request


def wants_logprobs(request: ResponsesRequest) -> bool:
    return bool(request.top_logprobs) or LOGPROBS_INCLUDE in (request.include or ())


# ---- input items -> chat messages --------------------------------------------------------


def _err(message: str, param: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Responses content parts as chat content (a string, or text/image_url parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _err(f"Invalid '{where}': expected a string or an array of parts.", where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise _err(f"Missing required parameter: '{at}.text'.", f"{at}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _err(
                    f"'{at}': only images given as 'image_url' are supported.",
                    f"{at}.image_url",
                    "unsupported_parameter",
                )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _err(
                f"Invalid '{at}.type': {kind!r} is not supported (input_text, input_image).",
                f"{at}.type",
            )
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
    return json.dumps(value)


def to_messages(request: ResponsesRequest, history: list[Message]) -> list[Message]:
    """The conversation for the engine: instructions, stored history, then this input."""
    messages: list[Message] = []
    if request.instructions:
        messages.append(_text_message("system", request.instructions))
    messages.extend(history)
    raw = request.input
    if isinstance(raw, str):
        messages.append(_text_message("user", raw))
        return messages
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise _err(
                    f"Invalid '{where}.role': {role!r}; expected user, system, developer or "
                    "assistant.",
                    f"{where}.role",
                )
            content = _parts(item.get("content"), f"{where}.content")
            messages.append(
                Message(role="system" if role == "developer" else role, content=content)
            )
        elif kind == "function_call":
            call = ToolCall(
                id=_str(item, "call_id", where),
                function=FunctionCall(
                    name=_str(item, "name", where), arguments=_str(item, "arguments", where)
                ),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls is not None:
                last.tool_calls.append(call)
            elif last is not None and last.role == "assistant":
                last.tool_calls = [call]
            else:
                messages.append(Message(role="assistant", content=None, tool_calls=[call]))
        elif kind == "function_call_output":
            messages.append(
                Message(
                    role="tool",
                    tool_call_id=_str(item, "call_id", where),
                    content=_output_text(item.get("output")),
                )
            )
        elif kind == "reasoning":
            continue  # a model's reasoning summary: nothing to replay to a chat model
        else:
            raise _err(
                f"Invalid '{where}.type': {kind!r} is not supported (message, function_call, "
                "function_call_output).",
                f"{where}.type",
            )
    return messages


def _text_message(role: str, text: str) -> Message:
    """`Message(role=role, content=text)` without validating the two strings again."""
    values = {"role": role, "content": text, "name": None, "tool_calls": None}
    return trusted(Message, {**values, "tool_call_id": None})


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _err(
            f"Missing required parameter: '{where}.{key}'.",
            f"{where}.{key}",
            "missing_required_parameter",
        )
    return value


def input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as stored items (ids added), for `GET .../input_items`."""
    raw = request.input
    items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
    out = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            role = item.get("role")
            if isinstance(content, str):
                part = "output_text" if role == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            if role == "assistant":
                content = [{**p, "annotations": p.get("annotations", [])} for p in content]
            entry = {"type": "message", "role": role, "content": content, "status": "completed"}
            out.append({"id": new_id("msg"), **entry})
        elif kind in ("function_call", "function_call_output"):
            entry = {k: v for k, v in item.items() if k != "id"}
            out.append({"id": item.get("id") or new_id("fc"), "status": "completed", **entry})
    return out


# ---- tools and options -------------------------------------------------------------------


def to_tool_specs(request: ResponsesRequest) -> list[ToolSpec]:
    specs = []
    for index, tool in enumerate(request.tools or ()):
        where = f"tools[{index}]"
        if tool.get("type") != "function":
            raise _err(
                f"Invalid '{where}.type': {tool.get('type')!r}; only 'function' tools are "
                "supported.",
                f"{where}.type",
                "unsupported_parameter",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _err(
                f"Missing required parameter: '{where}.name'.",
                f"{where}.name",
                "missing_required_parameter",
            )
        specs.append(
            ToolSpec(
                name=name,
                description=str(tool.get("description") or ""),
                parameters=tool.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    return specs


def response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    """`text.format` as chat completions' `response_format`."""
    fmt = (request.text or {}).get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise _err("Missing required parameter: 'text.format.schema'.", "text.format.schema")
        keys = ("name", "schema", "strict", "description")
        return {"type": "json_schema", "json_schema": {k: fmt[k] for k in keys if k in fmt}}
    raise _err(
        "Invalid 'text.format.type': expected 'text', 'json_object' or 'json_schema'.",
        "text.format.type",
    )


def chat_tool_choice(request: ResponsesRequest) -> str | dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def to_options(request: ResponsesRequest) -> ChatOptions:
    logprobs = wants_logprobs(request)
    return trusted(
        ChatOptions,
        {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_output_tokens,
            "stop": None,
            "seed": request.seed,
            "response_format": response_format(request),
            "tool_choice": chat_tool_choice(request),
            "parallel_tool_calls": request.parallel_tool_calls,
            "user": request.user,
            "logprobs": logprobs or None,
            "top_logprobs": request.top_logprobs if logprobs else None,
            "reasoning_effort": (request.reasoning or {}).get("effort"),
            "verbosity": (request.text or {}).get("verbosity"),
            "stream": bool(request.stream),
        },
    )


def gated_fields(request: ResponsesRequest, options: ChatOptions) -> dict[str, Any]:
    """Fields not every provider honours (see providers.base.check_fields)."""
    return {
        "logprobs": options.logprobs,
        "top_logprobs": request.top_logprobs,
        "response_format": options.response_format,
        "tool_choice": request.tool_choice,
        "seed": request.seed,
    }


def gated_params(request: ResponsesRequest) -> dict[str, str]:
    """The request field each gated field came from."""
    logprobs = "top_logprobs" if request.top_logprobs else "include"
    return {"logprobs": logprobs, "response_format": "text.format"}
