"""`local` provider: the embedded Gemma 3 270M, run by llama.cpp's own server in a child process.

- The child (`llama_process.ModelProcess`) is shared by every LocalProvider of the process and
  started on first use; this provider streams from it over its Unix socket (`/completion`).
- The model is a small *base* model: chats are rendered as a completion-style transcript
  (`local_prompt.build_prompt`) and generation stops at the next turn marker.
- Requests beyond the child's parallel slots wait in llama.cpp's FIFO queue; closing the stream
  closes the connection, and llama.cpp stops that generation within one token.
- If the child dies mid-answer, the stream fails at once with the cause in words (a
  ProviderError: an SSE error event on /v1, an error frame on /chat, a 502 otherwise).
- NODETOOL_UPSTREAM_TIMEOUT bounds each request, as for the other providers.
- Tools: with `tool_choice` `required` or a named function, and with `response_format`
  `json_object`/`json_schema`, decoding is constrained by a grammar built from the JSON Schema
  (`local_constraints`), so forced tool calls and structured output are valid JSON every time.
  With `tool_choice` `auto` the model answers in text (it cannot decide reliably when to call a
  tool). Image parts are ignored (text only).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from nodetool.config import Settings
from nodetool.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from nodetool.providers.local_constraints import Constraint, constraint_for, tool_call_of
from nodetool.providers.local_prompt import build_request
from nodetool.types.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

MODEL_ID = "gemma-3-270m"
CREATED = 1755000000  # release of Gemma 3 270M (Aug 2025)
_FINISH = {"limit": "length"}


class LocalProvider:
    """The embedded model behind the ChatProvider protocol."""

    name = "local"
    default_model = MODEL_ID
    cache_models = False  # its status (available or not) changes at run time

    def __init__(self, settings: Settings, *, default_max_tokens: int = 256) -> None:
        self._settings = settings
        self._default_max = default_max_tokens
        self._process = None  # llama_process.ModelProcess, once located
        self._clients: dict[Path, Any] = {}  # socket -> httpx.AsyncClient

    async def list_models(self) -> list[ModelInfo]:
        status = self._process.unavailable if self._process is not None else None
        return [
            ModelInfo(
                id=MODEL_ID, provider=self.name, created=CREATED, owned_by="google", status=status
            )
        ]

    async def process(self):  # -> ModelProcess
        """The shared child supervisor (assembling the GGUF on first use, off the loop)."""
        if self._process is None:
            from nodetool.providers.local_model import model_process

            self._process = await asyncio.to_thread(model_process, self._settings)
        return self._process

    async def _client(self, socket: Path) -> Any:
        client = self._clients.get(socket)
        if client is None:
            import httpx

            for stale in self._clients.values():
                await stale.aclose()
            transport = httpx.AsyncHTTPTransport(uds=str(socket))
            client = httpx.AsyncClient(transport=transport, base_url="http://llama", timeout=None)
            self._clients = {socket: client}
        return client

    async def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        if model != MODEL_ID:
            raise ModelNotFoundError(
                f"model {model!r} not found; provider 'local' serves {MODEL_ID!r}", param="model"
            )
        constraint = constraint_for(options, tools)
        body = build_request(
            messages, options, self._default_max, self._settings, constraint=constraint
        )
        process = await self.process()
        try:
            async with asyncio.timeout(self._settings.upstream_timeout):
                if constraint is not None and constraint.tool is not None:
                    async for event in self._tool_call(process, body, constraint):
                        yield event
                else:
                    async for event in self._generate(process, body):
                        yield event
        except TimeoutError:
            raise ProviderTimeoutError(
                f"the local model did not finish within {self._settings.upstream_timeout:g} s "
                "(NODETOOL_UPSTREAM_TIMEOUT)",
                provider=self.name,
            ) from None

    async def _generate(self, process: Any, body: dict[str, Any]) -> AsyncIterator[ProviderEvent]:
        import httpx

        socket = await process.ensure()
        client = await self._client(socket)
        first, final = True, None
        try:
            async with client.stream("POST", "/completion", json=body) as response:
                if response.status_code != 200:
                    raise _http_error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise _chunk_error(chunk["error"])
                    text = chunk.get("content") or ""
                    if first and text:
                        text = text.lstrip()
                        first = not text
                    if text:
                        yield TextDelta(text)
                    if chunk.get("stop"):
                        final = chunk
                        break
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            reason = await process.death()
            raise ProviderError(
                reason or f"lost the connection to the local model process ({type(exc).__name__})",
                provider=self.name,
            ) from None
        if final is None:
            reason = await process.death()
            raise ProviderError(
                reason or "the local model process ended the answer early", provider=self.name
            )
        prompt_tokens = int(final.get("tokens_evaluated") or 0)
        yield Usage(prompt_tokens, int(final.get("tokens_predicted") or 0))
        yield Finish(_FINISH.get(final.get("stop_type"), "stop"))  # type: ignore[arg-type]

    async def _tool_call(
        self, process: Any, body: dict[str, Any], constraint: Constraint
    ) -> AsyncIterator[ProviderEvent]:
        """A forced tool call: the constrained JSON, sent as one call once complete."""
        parts: list[str] = []
        async for event in self._generate(process, body):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Finish):
                name, arguments = tool_call_of(constraint, "".join(parts))
                yield ToolCallDelta(0, f"call_{uuid.uuid4().hex[:24]}", name, arguments)
                yield Finish("tool_calls" if event.reason == "stop" else event.reason)
            else:
                yield event

    async def aclose(self) -> None:
        """Close this provider's connections (the shared child runs on for the process)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


def _message_of(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:300]
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _http_error(status: int, raw: bytes) -> Exception:
    message = _message_of(raw)
    if status == 400:
        return InvalidRequestError(f"local model: {message}", param="messages")
    if status == 503:
        return ProviderUnavailableError(f"local model: {message}")
    return ProviderError(f"local model failed ({status}): {message}", provider="local")


def _chunk_error(error: Any) -> Exception:
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    if code == 400:
        return InvalidRequestError(f"local model: {message}", param="messages")
    return ProviderError(f"local model failed: {message}", provider="local")
