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
    """One response's state; `emit=False` skips building stream events (non-stream path)."""

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
        self.final: dict[str, Any] | None = None  # the response object once finished
        self.final_json = ""  # `final` as JSON text (sent and stored as it is)
        self.seq = 0
        self._text: dict[str, Any] | None = None  # the open message item
        self._parts: list[str] = []
        self._logprobs: list[dict[str, Any]] = []
        self._delta_head = ""
        self._calls: dict[int, dict[str, Any]] = {}  # open function_call items by index
        self._fixed: dict[str, Any] | None = None
        self._fixed_json = ""

    # ---- the response object ---------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """The parts of the object that never change during the response (made once)."""
        if self._fixed is None:
            r = self.request
            fmt = (r.text or {}).get("format") if response_format(r) else None
            self._fixed = {
                "id": self.id,
                "object": "response",
                "created_at": self.created_at,
                "background": False,
                "instructions": r.instructions,
                "max_output_tokens": r.max_output_tokens,
                "max_tool_calls": None,
                "model": self.model,
                "parallel_tool_calls": r.parallel_tool_calls is not False,
                "previous_response_id": r.previous_response_id,
                "reasoning": {"effort": (r.reasoning or {}).get("effort"), "summary": None},
                "service_tier": "default",
                "store": self.store,
                "temperature": 1.0 if r.temperature is None else r.temperature,
                "text": {"format": fmt or {"type": "text"}, **_verbosity(r)},
                "tool_choice": r.tool_choice.model_dump()
                if r.tool_choice is not None and not isinstance(r.tool_choice, str)
                else r.tool_choice or "auto",
                "tools": [_tool_entry(t) for t in r.tools or ()],
                "top_logprobs": r.top_logprobs or 0,
                "top_p": 1.0 if r.top_p is None else r.top_p,
                "truncation": r.truncation or "disabled",
                "user": r.user,
                "metadata": r.metadata or {},
            }
            self._fixed_json = _dumps(self._fixed)[1:-1]
        return self._fixed

    def _state(
        self, usage: Usage | None, error: dict[str, Any] | None, incomplete: str | None
    ) -> dict[str, Any]:
        """The parts that change: status, output, usage, error details."""
        return {
            "status": self.status,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "output": list(self.output),
            "usage": usage_object(usage) if usage is not None else None,
        }

    def _response_event(self, kind: str, state: str) -> str:
        """An event carrying the response (`state` encoded): its fixed part is serialised once
        per response."""
        self._settings()
        seq = self.seq
        self.seq += 1
        body = state[:-1] + "," + self._fixed_json
        return (
            f'event: {kind}\ndata: {{"type":"{kind}","response":{body}}},'
            f'"sequence_number":{seq}}}\n\n'
        )

    # ---- events ------------------------------------------------------------------------
    def _event(self, kind: str, body: dict[str, Any]) -> str:
        body = {"type": kind, **body, "sequence_number": self.seq}
        self.seq += 1
        return f"event: {kind}\ndata: {_dumps(body)}\n\n"

    def start(self) -> str:
        if not self.emit:
            return ""
        state = _dumps(self._state(None, None, None))
        created = self._response_event("response.created", state)
        return created + self._response_event("response.in_progress", state)

    def text(self, delta: str) -> str:
        out = ""
        if self._text is None:
            out = self._open_text()
        self._parts.append(delta)
        if not self.emit:
            return out
        seq = self.seq
        self.seq += 1
        return out + self._delta_head + _quote(delta) + ',"sequence_number":' + str(seq) + "}\n\n"

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
        self._delta_head = (
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            f'"item_id":"{item_id}","output_index":{index},"content_index":0,'
            '"logprobs":[],"delta":'
        )
        where = {"output_index": index}
        out += self._event("response.output_item.added", {**where, "item": dict(self._text)})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        ids = {"item_id": item_id, **where, "content_index": 0}
        return out + self._event("response.content_part.added", {**ids, "part": part})

    def _close_text(self, status: str) -> str:
        item, self._text = self._text, None
        if item is None:
            return ""
        text = "".join(self._parts)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": self._logprobs}
        item["content"] = [part]
        item["status"] = status
        if not self.emit:
            return ""
        index = self.output.index(item)
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        short = [
            {"token": e["token"], "logprob": e["logprob"], "top_logprobs": e["top_logprobs"]}
            for e in self._logprobs
        ]
        out = self._event("response.output_text.done", {**ids, "text": text, "logprobs": short})
        out += self._event("response.content_part.done", {**ids, "part": part})
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})

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
                added = {"output_index": len(self.output) - 1, "item": dict(item)}
                out += self._event("response.output_item.added", added)
        item["arguments"] += delta.arguments
        if self.emit and delta.arguments:
            body = {
                "item_id": item["id"],
                "output_index": self.output.index(item),
                "delta": delta.arguments,
            }
            out += self._event("response.function_call_arguments.delta", body)
        return out

    def _close_calls(self, status: str) -> str:
        out = ""
        for item in self._calls.values():
            item["status"] = status
            if self.emit:
                index = self.output.index(item)
                body = {
                    "item_id": item["id"],
                    "output_index": index,
                    "arguments": item["arguments"],
                }
                out += self._event("response.function_call_arguments.done", body)
                out += self._event(
                    "response.output_item.done", {"output_index": index, "item": item}
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

    def _end(self, state: dict[str, Any]) -> str:
        """Set `final` and `final_json` (the fixed part's text reused: the object is the fixed
        part then the state); returns the state encoded."""
        self.final = {**self._settings(), **state}
        encoded = _dumps(state)
        self.final_json = "{" + self._fixed_json + "," + encoded[1:]
        return encoded
