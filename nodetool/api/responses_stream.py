"""The chat engine's events as an OpenAI `response` object and its stream events.

`ResponseBuilder` follows one turn: text opens an assistant `message` item, each client tool
call a `function_call` item, and the end of the turn closes them and sets the status. With
`emit` it also returns the SSE events OpenAI sends for each step (`response.created`,
`response.in_progress`, `response.output_item.added`, `response.content_part.added`,
`response.output_text.delta`/`.done`, `response.function_call_arguments.delta`/`.done`,
`response.content_part.done`, `response.output_item.done`, then `response.completed`,
`response.incomplete` or `response.failed`), numbered by `sequence_number`. Text deltas are
formatted from a per-item template (one string escape each), like the chat chunk encoder.
"""

from __future__ import annotations

import json
import math
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from nodetool.api.responses_wire import ResponsesRequest, new_id, response_format
from nodetool.errors import NodetoolError
from nodetool.types.events import ToolCallDelta, Usage

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # no cycles
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def usage_object(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """A chat-shape token logprob in the Responses shape (bytes always present)."""
    token = str(entry.get("token", ""))
    return {
        "token": token,
        "logprob": float(entry.get("logprob") or 0.0),
        "bytes": entry.get("bytes") or list(token.encode()),
        "top_logprobs": [
            {
                "token": str(top.get("token", "")),
                "logprob": float(top.get("logprob") or 0.0),
                "bytes": top.get("bytes") or list(str(top.get("token", "")).encode()),
            }
            for top in entry.get("top_logprobs") or ()
        ],
    }


def _tool_entry(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        "strict": tool.get("strict", True),
    }


def _verbosity(request: ResponsesRequest) -> dict[str, Any]:
    verbosity = (request.text or {}).get("verbosity")
    return {"verbosity": verbosity} if verbosity is not None else {}


class ResponseBuilder:
    """One response's state; `emit=False` skips building stream events (non-stream path).

    Items are encoded once, when they close (`_items`); the response's fixed members once per
    response (`_fixed_json`), formatted directly: every event and the final object reuse them.
    """

    def __init__(
        self,
        request: ResponsesRequest,
        model: str,
        *,
        emit: bool,
        store: bool,
        response_id: str | None = None,
    ) -> None:
        self.request = request
        self.model = model
        self.emit = emit
        self.store = store
        self.id = response_id or new_id("resp")
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self.final_json = ""  # the response object once finished, as JSON (sent and stored)
        self.seq = 0
        self._items: list[str] = []  # the JSON of each closed output item, in order
        self._text: dict[str, Any] | None = None  # the open message item
        self._parts: list[str] = []
        self._logprobs: list[dict[str, Any]] = []
        self._delta_head = ""
        self._calls: dict[int, dict[str, Any]] = {}  # open function_call items by index
        self._fixed_json = ""

    # ---- the response object ---------------------------------------------------------
    def _fixed(self) -> str:
        """The members that never change during the response, as JSON text without braces
        (the same text as the compact dump of their object)."""
        if not self._fixed_json:
            r = self.request
            fmt = (r.text or {}).get("format") if response_format(r) else None
            choice = r.tool_choice
            if choice is not None and not isinstance(choice, str):
                choice = choice.model_dump()
            text = _dumps({"format": fmt or {"type": "text"}, **_verbosity(r)}) if r.text else _TEXT
            self._fixed_json = (
                f'"id":{_quote(self.id)},"object":"response","created_at":{self.created_at},'
                f'"background":false,"instructions":{_json(r.instructions)},'
                f'"max_output_tokens":{_json(r.max_output_tokens)},"max_tool_calls":null,'
                f'"model":{_json(self.model)},'
                f'"parallel_tool_calls":{_json(r.parallel_tool_calls is not False)},'
                f'"previous_response_id":{_json(r.previous_response_id)},'
                f'"reasoning":{{"effort":{_json((r.reasoning or {}).get("effort"))},'
                f'"summary":null}},"service_tier":"default","store":{_json(self.store)},'
                f'"temperature":{_json(1.0 if r.temperature is None else r.temperature)},'
                f'"text":{text},'
                f'"tool_choice":{_json(choice or "auto")},'
                f'"tools":{_dumps([_tool_entry(t) for t in r.tools]) if r.tools else "[]"},'
                f'"top_logprobs":{_json(r.top_logprobs or 0)},'
                f'"top_p":{_json(1.0 if r.top_p is None else r.top_p)},'
                f'"truncation":{_json(r.truncation or "disabled")},"user":{_json(r.user)},'
                f'"metadata":{_dumps(r.metadata) if r.metadata else "{}"}'
            )
        return self._fixed_json

    def _state(
        self, usage: Usage | None, error: dict[str, Any] | None, incomplete: str | None
    ) -> str:
        """The members that change (status, error, output, usage) as a JSON object; every
        output item is closed (its JSON in `_items`)."""
        return (
            f'{{"status":"{self.status}","error":{_json(error)},"incomplete_details":'
            + ("null" if incomplete is None else f'{{"reason":"{incomplete}"}}')
            + ',"output":['
            + ",".join(self._items)
            + '],"usage":'
            + ("null" if usage is None else _usage_json(usage))
            + "}"
        )

    def _response_event(self, kind: str, state: str) -> str:
        """An event carrying the response (`state` encoded, then the fixed members)."""
        seq = self.seq
        self.seq += 1
        return (
            f'event: {kind}\ndata: {{"type":"{kind}","response":{state[:-1]},{self._fixed()}}},'
            f'"sequence_number":{seq}}}\n\n'
        )

    # ---- events ------------------------------------------------------------------------
    def _event(self, kind: str, body: str) -> str:
        """An event whose members after `type` are `body` (JSON text, without braces)."""
        seq = self.seq
        self.seq += 1
        return f'event: {kind}\ndata: {{"type":"{kind}",{body},"sequence_number":{seq}}}\n\n'

    def start(self) -> str:
        if not self.emit:
            return ""
        created = self._response_event("response.created", _START_STATE)
        return created + self._response_event("response.in_progress", _START_STATE)

    def text(self, delta: str) -> str:
        out = self._open_text() if self._text is None else ""
        self._parts.append(delta)
        if not self.emit:
            return out
        seq = self.seq
        self.seq += 1
        return f'{out}{self._delta_head}{_quote(delta)},"sequence_number":{seq}}}\n\n'

    def logprobs(self, content: list[dict[str, Any]]) -> None:
        if self._text is not None:
            self._logprobs.extend(_logprob(entry) for entry in content)

    def _open_text(self) -> str:
        out = self._close_all()
        item_id = new_id("msg")
        index = len(self.output)
        self._text = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        self.output.append(self._text)
        self._parts, self._logprobs = [], []
        if not self.emit:
            return out
        where = f'"item_id":"{item_id}","output_index":{index},"content_index":0'
        self._delta_head = (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            f'{where},"logprobs":[],"delta":'
        )
        item = f'{{"id":"{item_id}",{_MESSAGE_OPEN}}}'
        out += self._event("response.output_item.added", f'"output_index":{index},"item":{item}')
        return out + self._event("response.content_part.added", f"{where},{_EMPTY_PART}")

    def _close_text(self, status: str) -> str:
        item, self._text = self._text, None
        if item is None:
            return ""
        text = "".join(self._parts)
        logprobs = self._logprobs
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}
        item["content"] = [part]
        item["status"] = status
        quoted = _quote(text)
        part_json = (
            f'{{"type":"output_text","text":{quoted},"annotations":[],'
            f'"logprobs":{_dumps(logprobs) if logprobs else "[]"}}}'
        )
        item_json = (
            f'{{"id":"{item["id"]}","type":"message","role":"assistant","status":"{status}",'
            f'"content":[{part_json}]}}'
        )
        self._items.append(item_json)
        if not self.emit:
            return ""
        index = len(self._items) - 1
        where = f'"item_id":"{item["id"]}","output_index":{index},"content_index":0'
        short = "[]"
        if logprobs:
            short = _dumps(
                [
                    {
                        "token": e["token"],
                        "logprob": e["logprob"],
                        "top_logprobs": e["top_logprobs"],
                    }
                    for e in logprobs
                ]
            )
        out = self._event(
            "response.output_text.done", f'{where},"text":{quoted},"logprobs":{short}'
        )
        out += self._event("response.content_part.done", f'{where},"part":{part_json}')
        return out + self._event(
            "response.output_item.done", f'"output_index":{index},"item":{item_json}'
        )

    def tool_call(self, delta: ToolCallDelta) -> str:
        item = self._calls.get(delta.index)
        out = ""
        if item is None:
            out = self._close_text("completed")
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": delta.id or new_id("call"),
                "name": delta.name or "",
            }
            self._calls[delta.index] = item
            self.output.append(item)
            if self.emit:
                added = f'"output_index":{len(self.output) - 1},"item":{_dumps(item)}'
                out += self._event("response.output_item.added", added)
        item["arguments"] += delta.arguments
        if self.emit and delta.arguments:
            body = (
                f'"item_id":"{item["id"]}","output_index":{self.output.index(item)},'
                f'"delta":{_quote(delta.arguments)}'
            )
            out += self._event("response.function_call_arguments.delta", body)
        return out

    def _close_calls(self, status: str) -> str:
        out = ""
        for item in self._calls.values():
            item["status"] = status
            item_json = _dumps(item)
            self._items.append(item_json)
            if self.emit:
                index = len(self._items) - 1
                body = (
                    f'"item_id":"{item["id"]}","output_index":{index},'
                    f'"arguments":{_quote(item["arguments"])}'
                )
                out += self._event("response.function_call_arguments.done", body)
                out += self._event(
                    "response.output_item.done", f'"output_index":{index},"item":{item_json}'
                )
        self._calls = {}
        return out

    def _close_all(self, status: str = "completed") -> str:
        return self._close_text(status) + self._close_calls(status)

    def boundary(self) -> str:
        """A server-side tool round ended: the text so far is one finished message."""
        return self._close_all()

    # ---- the end -------------------------------------------------------------------------
    def finish(self, finish_reason: str | None, usage: Usage | None) -> str:
        incomplete = _INCOMPLETE.get(finish_reason or "")
        self.status = "incomplete" if incomplete else "completed"
        out = self._close_all("incomplete" if incomplete else "completed")
        state = self._end(self._state(usage, None, incomplete))
        if not self.emit:
            return out
        kind = "response.incomplete" if incomplete else "response.completed"
        return out + self._response_event(kind, state)

    def fail(self, exc: BaseException) -> str:
        status = exc.status if isinstance(exc, NodetoolError) else 500
        message = exc.message if isinstance(exc, NodetoolError) else "Internal server error"
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        self.status = "failed"
        out = self._close_all("incomplete")
        state = self._end(self._state(None, {"code": code, "message": message}, None))
        if not self.emit:
            return out
        return out + self._response_event("response.failed", state)

    def _end(self, state: str) -> str:
        """Set `final_json` (the fixed members, then the state); returns the state."""
        self.final_json = "{" + self._fixed() + "," + state[1:]
        return state


_START_STATE = (
    '{"status":"in_progress","error":null,"incomplete_details":null,"output":[],"usage":null}'
)
_TEXT = '{"format":{"type":"text"}}'
_MESSAGE_OPEN = '"type":"message","role":"assistant","status":"in_progress","content":[]'
_EMPTY_PART = '"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}'


def _json(value: Any) -> str:
    """`value` as compact JSON (strings, None and booleans without the encoder's call)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)  # what the encoder writes for them
    return _dumps(value)


def _usage_json(usage: Usage) -> str:
    """`usage_object(usage)` encoded."""
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if type(prompt) is not int or type(completion) is not int:
        return _dumps(usage_object(usage))
    return (
        f'{{"input_tokens":{prompt},"input_tokens_details":{{"cached_tokens":0,'
        f'"cache_write_tokens":0}},"output_tokens":{completion},'
        f'"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":{prompt + completion}}}'
    )
