"""`openai` provider: any OpenAI-compatible `/chat/completions` endpoint, streamed over SSE.

One pooled `httpx.AsyncClient` per provider instance, reused across requests; the SSE stream is
parsed directly from bytes. Closing the event iterator (or cancelling its consumer) closes the
upstream response, and with it the connection, at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from nodetool.config import Settings
from nodetool.errors import ProviderError, ProviderTimeoutError
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_decode = json.JSONDecoder().decode  # str input: about 2x faster than json.loads(bytes)
_OPTION_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "user")


def message_to_wire(message: Message) -> dict[str, Any]:
    """A Message as an OpenAI `messages[]` entry (content parts are passed through)."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        wire["name"] = message.name
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def build_request(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[ToolSpec] | None,
    options: ChatOptions | None,
) -> dict[str, Any]:
    """The streaming `/chat/completions` request body."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_wire(m) for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [tool.openai() for tool in tools]
    if options is not None:
        for field in _OPTION_FIELDS:
            value = getattr(options, field)
            if value is not None:
                body[field] = value
        if options.tool_choice is not None and tools:
            body["tool_choice"] = options.tool_choice
        if options.parallel_tool_calls is not None and tools:
            body["parallel_tool_calls"] = options.parallel_tool_calls
    return body


def upstream_message(response: httpx.Response) -> str:
    """The upstream's error message from an OpenAI-style envelope, else the body text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return json.dumps(data)[:500]


class OpenAIProvider:
    """Chat completions from an OpenAI-compatible HTTP API."""

    default_model: str | None = None

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float = 120.0,
        *,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        return cls(
            settings.openai_base_url or DEFAULT_BASE_URL,
            settings.openai_api_key,
            settings.upstream_timeout,
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        return ProviderError(
            f"{self.name} upstream returned {status}: {upstream_message(response)}",
            provider=self.name,
            upstream_status=status,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeoutError(
                f"{self.name} upstream at {self.base_url} timed out", provider=self.name
            )
        if isinstance(exc, httpx.ConnectError):
            text = f"cannot connect to {self.name} upstream at {self.base_url}: {exc}"
        else:
            text = f"{self.name} upstream at {self.base_url} failed: {exc!r}"
        return ProviderError(text, provider=self.name)

    async def list_models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get("models")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            entries = response.json().get("data") or []
        except (ValueError, AttributeError):
            raise ProviderError(
                f"{self.name} upstream sent an invalid model list", provider=self.name
            ) from None
        return [
            ModelInfo(
                id=str(entry["id"]),
                provider=self.name,
                created=int(entry.get("created") or 0),
                owned_by=str(entry.get("owned_by") or self.name),
            )
            for entry in entries
            if isinstance(entry, dict) and entry.get("id")
        ]

    async def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        body = build_request(messages, model, tools, options)
        tail: list[ProviderEvent] = []
        try:
            async with self._client.stream("POST", "chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                async for event in self._events(response):
                    if event.__class__ is TextDelta or event.__class__ is ToolCallDelta:
                        yield event
                    else:  # Usage/Finish: after the response is released to the pool
                        tail.append(event)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except (ValueError, AttributeError) as exc:
            raise ProviderError(
                f"{self.name} upstream sent invalid stream data: {exc}", provider=self.name
            ) from None
        for event in tail:
            yield event

    async def _events(self, response: httpx.Response) -> AsyncIterator[ProviderEvent]:
        """Parse the SSE body; Usage (if any) and Finish come last, after the stream ends."""
        finish: FinishReason | None = None
        usage: dict[str, Any] | None = None
        saw_tools = done = False
        pending = b""
        decode = _decode
        async for chunk in response.aiter_bytes():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line.startswith(b"data:") or done:
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                data = decode(payload.decode())
                if data.get("usage"):
                    usage = data["usage"]
                choices = data.get("choices")
                if not choices:
                    if data.get("error"):
                        raise self._stream_error(data["error"])
                    continue
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    if content:
                        yield TextDelta(content)
                    calls = delta.get("tool_calls")
                    if calls:
                        saw_tools = True
                        for call in calls:
                            function = call.get("function") or {}
                            yield ToolCallDelta(
                                call.get("index", 0),
                                call.get("id"),
                                function.get("name"),
                                function.get("arguments") or "",
                            )
                reason = choice.get("finish_reason")
                if reason:
                    finish = _FINISH.get(reason, "stop")
        if not done and finish is None:
            raise ProviderError(
                f"{self.name} upstream closed the stream before it finished", provider=self.name
            )
        if usage:
            yield Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        yield Finish(finish or ("tool_calls" if saw_tools else "stop"))

    def _stream_error(self, error: Any) -> ProviderError:
        message = error.get("message") if isinstance(error, dict) else str(error)
        status = error.get("code") if isinstance(error, dict) else None
        return ProviderError(
            f"{self.name} upstream failed mid-stream: {message}",
            provider=self.name,
            upstream_status=status if isinstance(status, int) else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
