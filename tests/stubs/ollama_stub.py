"""An Ollama-API upstream stub (raw ASGI, served by uvicorn on loopback).

Routes: `GET /api/version`, `GET /api/tags` (lists MODELS), `POST /api/chat` (NDJSON stream,
or one JSON object when `"stream": false`). Behaviour, from directives in the last user message
(same spelling as tests/stubs/openai_stub.py):
   - `[[tool:NAME {json args}]]` (repeatable): when tools are offered and the last message is not
     a tool result, the model calls NAME (complete calls, as Ollama sends them).
   - `[[slow:S]]` sleep S seconds before each chunk; `[[delay:S]]` before the response starts.
   - `[[error:STATUS]]` answer with that status and `{"error": "..."}`.
   - `[[midstream-error]]` send one chunk, then an `{"error": ...}` line.
   - `[[hang]]` never answer (until the client goes away).
   - `[[reset:N]]` send N chunks, then drop the connection.
   - `[[length]]` finish with `done_reason: "length"`.
   - `[[say:TEXT]]` reply TEXT instead of the echo.
After a tool result: "Tool results: <contents joined by ' | '>"; otherwise "Echo: <text>".
An unknown model gets 404 `{"error": "model 'x' not found"}`, as Ollama does.

`POST /api/embed` answers unit vectors (4 floats per input); `POST /api/generate` (NDJSON)
completes `prompt` by the same rules as a user message, recorded in `stub.extra_requests`.

Every chat body is recorded in `stub.requests`, `/api/tags` calls are counted in
`stub.tag_requests`; client disconnects during a response in
`stub.disconnects` (monotonic times).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

from tests.support.servers import StubServer

_DIRECTIVE = re.compile(r"\[\[([\w-]+)(?::(.*?))?\]\]", re.S)
MODELS = ["llama-stub:latest", "stub-model:latest"]


def _plan(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    plan: dict[str, Any] = {"text": None, "tools": [], "slow": 0.0, "delay": 0.0}
    if last.get("role") == "tool":
        tail = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            tail.insert(0, str(message.get("content", "")))
        plan["text"] = "Tool results: " + " | ".join(tail)
        return plan
    users = [m for m in messages if m.get("role") == "user"]
    text = str(users[-1].get("content", "")) if users else ""
    for name, arg in _DIRECTIVE.findall(text):
        if name == "tool" and body.get("tools"):
            tool_name, _, raw = arg.strip().partition(" ")
            plan["tools"].append((tool_name, json.loads(raw or "{}")))
        elif name in ("slow", "delay"):
            plan[name] = float(arg)
        elif name in ("error", "reset"):
            plan[name] = int(arg)
        elif name == "say":
            plan["text"] = arg
        else:
            plan[name] = True
    if plan["text"] is None:
        plan["text"] = "Echo: " + _DIRECTIVE.sub("", text).strip()
    return plan


class OllamaStub(StubServer):
    """The stub server; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.tag_requests = 0
        self.extra_requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = self._server.url

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.extra_requests.clear()
            self.disconnects.clear()
            self.tag_requests = 0

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/api/version" and method == "GET":
            await _json(send, 200, {"version": "0.0.0-stub"})
        elif path == "/api/tags" and method == "GET":
            self.tag_requests += 1
            models = [
                {"name": m, "model": m, "modified_at": "2024-05-01T10:00:00.123456789-07:00"}
                for m in MODELS
            ]
            await _json(send, 200, {"models": models})
        elif path in ("/api/embed", "/api/generate") and method == "POST":
            payload = json.loads(body or b"{}")
            with self._lock:
                self.extra_requests.append((path.rsplit("/", 1)[-1], payload))
            if path == "/api/embed":
                inputs = payload.get("input")
                inputs = [inputs] if isinstance(inputs, str) else inputs or []
                vectors = [[0.5, 0.5, 0.5, 0.5] for _ in inputs]
                await _json(send, 200, {"embeddings": vectors, "prompt_eval_count": len(inputs)})
                return
            plan = _plan({"messages": [{"role": "user", "content": payload.get("prompt", "")}]})
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")],
                }
            )
            for word in re.findall(r"\S+\s*", plan["text"]):
                await _line(send, {"model": payload["model"], "response": word, "done": False})
            final = {"response": "", "done": True, "done_reason": "stop"}
            final.update(prompt_eval_count=3, eval_count=2)
            await _line(send, {"model": payload["model"], **final}, more=False)
        elif path == "/api/chat" and method == "POST":
            payload = json.loads(body or b"{}")
            with self._lock:
                self.requests.append(payload)
            if (
                payload.get("model") not in MODELS
                and f"{payload.get('model')}:latest" not in MODELS
            ):
                await _json(send, 404, {"error": f"model '{payload.get('model')}' not found"})
                return
            await self._chat(payload, receive, send)
        else:
            await _json(send, 404, {"error": "404 page not found"})

    async def _watch(self, receive: Any) -> None:
        while True:
            if (await receive())["type"] == "http.disconnect":
                self.disconnects.append(time.monotonic())
                return

    async def _chat(self, payload: dict[str, Any], receive: Any, send: Any) -> None:
        plan = _plan(payload)
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            if plan["delay"]:
                await asyncio.sleep(plan["delay"])
            if plan.get("hang"):
                await asyncio.shield(watcher)
                return
            if plan.get("error"):
                await _json(send, plan["error"], {"error": f"stub error {plan['error']}"})
                return
            await self._stream(payload, plan, send)
        finally:
            if not watcher.done():
                watcher.cancel()

    async def _stream(self, payload: dict[str, Any], plan: dict[str, Any], send: Any) -> None:
        model = payload["model"]
        stream = payload.get("stream", True)
        lines: list[dict[str, Any]] = []
        if plan["tools"]:
            calls = [{"function": {"name": n, "arguments": a}} for n, a in plan["tools"]]
            lines.append({"message": {"role": "assistant", "content": "", "tool_calls": calls}})
        else:
            for word in re.findall(r"\S+\s*", plan["text"]) or [plan["text"]]:
                lines.append({"message": {"role": "assistant", "content": word}})
        done = {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length" if plan.get("length") else "stop",
            "prompt_eval_count": 7,
            "eval_count": len(lines),
        }
        if not stream:
            text = "".join(line["message"]["content"] for line in lines)
            merged = {**done, "message": {"role": "assistant", "content": text}}
            await _json(send, 200, {"model": model, **merged})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")],
            }
        )
        for sent, line in enumerate(lines):
            if plan.get("reset") is not None and sent >= plan["reset"]:
                raise ConnectionResetError("stub drops the connection mid-stream")
            if plan.get("midstream-error") and sent == 1:
                await _line(send, {"error": "stub failed mid-stream"}, more=False)
                return
            if plan["slow"]:
                await asyncio.sleep(plan["slow"])
            await _line(send, {"model": model, "done": False, **line})
        await _line(send, {"model": model, **done}, more=False)


async def _line(send: Any, data: dict[str, Any], more: bool = True) -> None:
    await send(
        {"type": "http.response.body", "body": json.dumps(data).encode() + b"\n", "more_body": more}
    )


async def _json(send: Any, status: int, data: dict[str, Any]) -> None:
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
    await send({"type": "http.response.body", "body": body})
