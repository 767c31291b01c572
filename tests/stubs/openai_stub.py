"""An OpenAI-compatible upstream stub (raw ASGI, served by uvicorn on loopback).

Behaviour, first match wins:
1. Scripted replies queued with `stub.enqueue(Reply(...))` (FIFO, one per chat request).
2. Directives in the text of the last user message:
   - `[[tool:NAME {json args}]]` (repeatable → parallel calls): if the request offers tools and
     the last message is not a tool result, the model calls NAME with those arguments.
   - `[[chunks:N]]` the reply text is sent in exactly N content deltas.
   - `[[slow:S]]` sleep S seconds before each delta; `[[delay:S]]` before the response starts.
   - `[[error:STATUS]]` answer with that HTTP status and an OpenAI error envelope.
   - `[[hang]]` never answer (until the client goes away).
   - `[[reset:N]]` send N deltas, then drop the connection mid-stream (non-stream: half the
     JSON body, then drop).
   - `[[length]]` finish with `finish_reason: "length"`.
   - `[[say:TEXT]]` reply TEXT instead of the echo.
3. After a tool result (last message role `tool`): "Tool results: <contents joined by ' | '>".
4. Otherwise: "Echo: <user text with directives removed>".

`POST /v1/embeddings` answers deterministic unit vectors (8 floats, or `dimensions`);
`POST /v1/completions` (legacy, streamed or not) completes the prompt by the same rules as a
user message (`echo` repeats the prompt; `logprobs: N` adds legacy log probabilities). With
`logprobs: true` chat replies carry one chat-shape logprob entry per delta (`top_logprobs`
alternatives each).

Every chat request body is recorded in `stub.requests`, embeddings and completions bodies in
`stub.extra_requests` as `(path, body)`; `stub.peak` is the most chat requests being
answered at once since the last `reset()`; client disconnects during a response are
recorded in `stub.disconnects` (monotonic times) so tests can prove cancellation reached upstream.
`GET /v1/models` lists `stub-model` and `stub-model-2` (or the `models` given).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import StubServer

_DIRECTIVE = re.compile(r"\[\[(\w+)(?::(.*?))?\]\]", re.S)
MODELS = ["stub-model", "stub-model-2"]


@dataclass
class Reply:
    """A scripted reply for one chat request."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int | None = None
    error_message: str = "stub upstream error"
    chunks: int | None = None
    chunk_delay: float = 0.0
    start_delay: float = 0.0
    hang: bool = False
    reset_after: int | None = None
    finish_reason: str | None = None


def _user_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text") for p in content if isinstance(p, dict))
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def plan_reply(body: dict[str, Any]) -> Reply:
    """Derive the reply from the request's messages (directives, tool results, echo)."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        results = [
            _user_text(m) for m in messages[_tail_start(messages) :] if m.get("role") == "tool"
        ]
        return Reply(text="Tool results: " + " | ".join(results))
    users = [m for m in messages if m.get("role") == "user"]
    text = _user_text(users[-1]) if users else ""
    reply = Reply()
    clean = _DIRECTIVE.sub("", text).strip()
    for name, arg in _DIRECTIVE.findall(text):
        if name == "tool" and body.get("tools"):
            tool_name, _, raw = arg.strip().partition(" ")
            reply.tool_calls.append((tool_name, json.loads(raw or "{}")))
        elif name == "chunks":
            reply.chunks = int(arg)
        elif name == "slow":
            reply.chunk_delay = float(arg)
        elif name == "delay":
            reply.start_delay = float(arg)
        elif name == "error":
            reply.status = int(arg)
        elif name == "hang":
            reply.hang = True
        elif name == "reset":
            reply.reset_after = int(arg)
        elif name == "length":
            reply.finish_reason = "length"
        elif name == "say":
            reply.text = arg
    if reply.text is None:
        reply.text = f"Echo: {clean}"
    return reply


def _tail_start(messages: list[dict[str, Any]]) -> int:
    """Index just after the last non-tool message (the current round's tool results)."""
    index = len(messages)
    while index > 0 and messages[index - 1].get("role") == "tool":
        index -= 1
    return index


def split_text(text: str, chunks: int | None) -> list[str]:
    """Split into `chunks` pieces (exactly, padding with empty-free slices), else by words."""
    if chunks:
        size = max(1, -(-len(text) // chunks))
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        while len(pieces) < chunks:
            pieces.append(" ")
        return pieces[:chunks] if len(pieces) > chunks else pieces
    words = re.findall(r"\S+\s*", text)
    return words or [text]


class OpenAIStub(StubServer):
    """The stub server; use as a context manager or call start()/stop()."""

    def __init__(self, models: list[str] | None = None) -> None:
        self.models = models or MODELS
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.extra_requests: list[tuple[str, dict[str, Any]]] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.inflight = 0
        self.peak = 0
        super().__init__()
        self.url = self._server.url + "/v1"
        self.base = self._server.url

    # --- control -------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.extra_requests.clear()
            self.headers.clear()
            self.disconnects.clear()
            self.peak = self.inflight

    # --- ASGI ----------------------------------------------------------------------
    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path.endswith("/models") and scope["method"] == "GET":
            data = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "stub"}
                    for m in self.models
                ],
            }
            await _json(send, 200, data)
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            await _json(send, 400, _error("invalid json", "invalid_json"))
            return
        if path.endswith(("/embeddings", "/v1/completions")) and scope["method"] == "POST":
            with self._lock:
                self.extra_requests.append((path.rsplit("/", 1)[-1], payload))
            if path.endswith("/embeddings"):
                await _json(send, 200, embeddings(payload))
            else:
                await self._legacy(payload, send)
            return
        if not path.endswith("/chat/completions"):
            await _json(send, 404, _error("no such route", "not_found"))
            return
        with self._lock:
            self.requests.append(payload)
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            reply = self._queue.popleft() if self._queue else plan_reply(payload)
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            await self._respond(payload, reply, receive, send)
        finally:
            with self._lock:
                self.inflight -= 1

    async def _respond(
        self, payload: dict[str, Any], reply: Reply, receive: Any, send: Any
    ) -> None:
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        try:
            if reply.start_delay:
                await asyncio.sleep(reply.start_delay)
            if reply.hang:
                await asyncio.shield(watcher)
                return
            if reply.status:
                await _json(send, reply.status, _error(reply.error_message, "stub_error"))
                return
            if payload.get("stream"):
                await self._stream(payload, reply, send)
            elif reply.reset_after is not None:  # half the JSON body, then drop the connection
                await _json(send, 200, _completion(payload, reply), truncate=True)
                raise ConnectionResetError("stub drops the connection mid-response")
            else:
                await _json(send, 200, _completion(payload, reply))
        finally:
            if not watcher.done():
                watcher.cancel()

    async def _legacy(self, payload: dict[str, Any], send: Any) -> None:
        """A legacy `text_completion`, as one object or as SSE chunks."""
        choices, usage = legacy_chunks(payload)
        head = {"id": "cmpl-stub", "object": "text_completion", "created": 1700000000}
        head["model"] = payload.get("model", "stub-model")
        if not payload.get("stream"):
            text = "".join(c["text"] for c in choices)
            merged: dict[str, Any] = {"index": 0, "text": text, "logprobs": None}
            merged["finish_reason"] = choices[-1]["finish_reason"]
            if payload.get("logprobs") is not None:
                merged["logprobs"] = {
                    key: [v for c in choices for v in (c["logprobs"][key] or [])]
                    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
                }
            await _json(send, 200, {**head, "choices": [merged], "usage": usage})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for choice in choices:
            await _sse(send, {**head, "choices": [choice]})
        if (payload.get("stream_options") or {}).get("include_usage"):
            await _sse(send, {**head, "choices": [], "usage": usage})
        await _sse(send, "[DONE]", more=False)

    async def _watch_disconnect(self, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects.append(time.monotonic())
                return

    async def _stream(self, payload: dict[str, Any], reply: Reply, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        cid = f"chatcmpl-stub{len(self.requests)}"
        model = payload.get("model", "stub-model")

        async def emit(delta: dict[str, Any], finish: str | None = None) -> None:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            if payload.get("logprobs") and delta.get("content"):
                choice["logprobs"] = {"content": chat_logprobs([delta["content"]], payload)}
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [choice],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True,
                }
            )

        await emit({"role": "assistant", "content": ""})
        sent = 0
        if reply.tool_calls:
            for index, (name, args) in enumerate(reply.tool_calls):
                raw = json.dumps(args)
                half = len(raw) // 2
                await emit(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": f"call_{index}_{name}",
                                "type": "function",
                                "function": {"name": name, "arguments": raw[:half]},
                            }
                        ]
                    }
                )
                await emit(
                    {"tool_calls": [{"index": index, "function": {"arguments": raw[half:]}}]}
                )
            finish = "tool_calls"
        else:
            for piece in split_text(reply.text or "", reply.chunks):
                if reply.reset_after is not None and sent >= reply.reset_after:
                    raise ConnectionResetError("stub drops the connection mid-stream")
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                await emit({"content": piece})
                sent += 1
            finish = reply.finish_reason or "stop"
        await emit({}, finish)
        options = payload.get("stream_options") or {}
        if options.get("include_usage"):
            usage = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": _usage(payload, max(sent, 1)),
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(usage).encode() + b"\n\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _sse(send: Any, data: dict[str, Any] | str, more: bool = True) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    await send(
        {"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": more}
    )


def _usage(payload: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = sum(len(_user_text(m).split()) for m in payload.get("messages") or []) + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(payload: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    finish = reply.finish_reason or "stop"
    if reply.tool_calls:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}_{name}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ],
        }
        finish = "tool_calls"
    split = split_text(reply.text or "", reply.chunks)
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    if payload.get("logprobs") and not reply.tool_calls:
        choice["logprobs"] = {"content": chat_logprobs(split, payload)}
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": payload.get("model", "stub-model"),
        "choices": [choice],
        "usage": _usage(payload, len(split)),
    }


def chat_logprobs(pieces: list[str], payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One chat-shape entry per piece (logprob -0.25), `top_logprobs` alternatives each."""
    top = int(payload.get("top_logprobs") or 0)
    return [
        {
            "token": piece,
            "logprob": -0.25,
            "bytes": list(piece.encode()),
            "top_logprobs": [
                {"token": piece, "logprob": -0.25 - i, "bytes": list(piece.encode())}
                for i in range(top)
            ],
        }
        for piece in pieces
    ]


def embeddings(payload: dict[str, Any]) -> dict[str, Any]:
    """A `list` of unit vectors derived from each input's bytes."""
    raw = payload.get("input")
    inputs = [raw] if isinstance(raw, str) else list(raw or [])
    size = int(payload.get("dimensions") or 8)
    data = []
    for index, text in enumerate(inputs):
        seed = [b for b in str(text).encode()] or [1]
        vector = [float(seed[i % len(seed)] + i) for i in range(size)]
        norm = sum(x * x for x in vector) ** 0.5
        data.append(
            {"object": "embedding", "index": index, "embedding": [x / norm for x in vector]}
        )
    tokens = sum(len(str(t).split()) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": payload.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def legacy_chunks(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The choices of a legacy completion, one per piece (echo first), and its usage."""
    prompt = payload.get("prompt")
    prompt = prompt[0] if isinstance(prompt, list) else str(prompt or "")
    reply = plan_reply({"messages": [{"role": "user", "content": prompt}]})
    pieces = split_text(reply.text or "", reply.chunks)
    if payload.get("echo"):
        pieces.insert(0, prompt)
    top = payload.get("logprobs")
    choices = []
    offset = 0
    for piece in pieces:
        choice: dict[str, Any] = {"index": 0, "text": piece, "finish_reason": None}
        if top is not None:
            choice["logprobs"] = {
                "tokens": [piece],
                "token_logprobs": [-0.5],
                "top_logprobs": [{piece: -0.5}] if top else None,
                "text_offset": [offset],
            }
        offset += len(piece)
        choices.append(choice)
    choices[-1]["finish_reason"] = reply.finish_reason or "stop"
    prompt_tokens = len(prompt.split()) + 1
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens + len(pieces),
    }
    return choices, usage


def _error(message: str, code: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


async def _json(send: Any, status: int, data: dict[str, Any], truncate: bool = False) -> None:
    """Send `data` as a JSON response; `truncate` sends only its first half (more to come)."""
    body = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    if truncate:
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        return
    await send({"type": "http.response.body", "body": body})
