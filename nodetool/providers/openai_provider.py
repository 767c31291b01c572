"""`openai` provider: any OpenAI-compatible `/chat/completions` endpoint.

One pooled HttpClient (nodetool.providers.http_client) per provider: at most
NODETOOL_UPSTREAM_MAX_CONNECTIONS connections, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` honoured.
SSE bytes are parsed as they arrive; `ChatOptions.stream=False` makes one non-streaming call
that yields the same events at once. Closing the event iterator (or cancelling its consumer)
aborts the upstream connection at once."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import orjson

from nodetool.config import Settings
from nodetool.errors import ProviderError, ProviderTimeoutError
from nodetool.providers.base import GATED_FIELDS, capabilities_for, scrub
from nodetool.providers.http_client import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectError,
    ConnectTimeout,
    HttpClient,
    HttpError,
    HttpTimeout,
    Response,
)
from nodetool.providers.openai_extras import OpenAIExtras
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _encode(body: dict[str, Any]) -> bytes:
    """The upstream request body (orjson; the stdlib for what orjson refuses: huge ints)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode()


# ChatOptions fields passed through as they are when set
_OPTION_FIELDS = (
    *("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "user"),
    *("logprobs", "top_logprobs", "reasoning_effort", "verbosity"),
)


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
    stream: bool = True,
) -> dict[str, Any]:
    """The `/chat/completions` request body (streaming with usage, unless `stream` is False)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_wire(m) for m in messages],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    else:
        body["stream"] = False
    if tools:
        body["tools"] = [tool.openai() for tool in tools]
    if options is not None:
        values = options.__dict__  # the fields' values (no per-attribute model hook)
        for field in _OPTION_FIELDS:
            value = values[field]
            if value is not None:
                body[field] = value
        if values["tool_choice"] is not None and tools:
            body["tool_choice"] = values["tool_choice"]
        if values["parallel_tool_calls"] is not None and tools:
            body["parallel_tool_calls"] = values["parallel_tool_calls"]
    return body


def error_text(body: bytes, reason: str = "") -> str:
    """The upstream's error message from an OpenAI-style envelope, else the body text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or reason
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return json.dumps(data)[:500]


class _ReadResponse(Protocol):
    content: bytes
    reason_phrase: str


def upstream_message(response: _ReadResponse) -> str:
    """`error_text` of a read httpx-style response (used by the ollama provider)."""
    return error_text(response.content, response.reason_phrase)


def completion_events(data: Any) -> list[ProviderEvent]:
    """A non-streaming `chat.completion` as the events its stream would have produced."""
    choices = data.get("choices")
    if not choices:
        raise ValueError("the completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    events: list[ProviderEvent] = []
    content = message.get("content")
    if content:
        events.append(TextDelta(content if isinstance(content, str) else json.dumps(content)))
    logprobs = (choice.get("logprobs") or {}).get("content")
    if logprobs:
        events.append(TokenLogprobs(logprobs))
    calls = message.get("tool_calls") or ()
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        events.append(ToolCallDelta(index, call.get("id"), function.get("name"), arguments))
    usage = data.get("usage")
    if usage:
        events.append(
            Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        )
    reason = choice.get("finish_reason")
    events.append(
        Finish(_FINISH.get(reason, "stop") if reason else ("tool_calls" if calls else "stop"))
    )
    return events


class _SSEParser:
    """Turns the SSE body of a streaming completion into provider events, chunk by chunk."""

    __slots__ = ("provider", "pending", "finish", "usage", "saw_tools", "done")

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self.pending = b""
        self.finish: FinishReason | None = None
        self.usage: dict[str, Any] | None = None
        self.saw_tools = self.done = False

    def feed(self, chunk: bytes) -> list[ProviderEvent]:
        """The events completed by `chunk` (lines are split on LF; CR is stripped)."""
        lines = (self.pending + chunk if self.pending else chunk).split(b"\n")
        self.pending = lines.pop()
        events: list[ProviderEvent] = []
        loads = orjson.loads
        for line in lines:
            if not line.startswith(b"data:") or self.done:
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            data = loads(payload)  # invalid JSON: a ValueError
            if data.get("usage"):
                self.usage = data["usage"]
            choices = data.get("choices")
            if not choices:
                if data.get("error"):
                    raise self.provider._stream_error(data["error"])
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    events.append(TextDelta(content))
                logprobs = choice.get("logprobs")
                if logprobs and logprobs.get("content"):
                    events.append(TokenLogprobs(logprobs["content"]))
                calls = delta.get("tool_calls")
                if calls:
                    self.saw_tools = True
                    for call in calls:
                        function = call.get("function") or {}
                        events.append(
                            ToolCallDelta(
                                call.get("index", 0),
                                call.get("id"),
                                function.get("name"),
                                function.get("arguments") or "",
                            )
                        )
            reason = choice.get("finish_reason")
            if reason:
                self.finish = _FINISH.get(reason, "stop")
        return events

    def end(self) -> list[ProviderEvent]:
        """Usage (if sent) and Finish, once the body ended; an unfinished stream is an error."""
        if not self.done and self.finish is None:
            name = self.provider.name
            raise ProviderError(
                f"{name} upstream closed the stream before it finished", provider=name
            )
        events: list[ProviderEvent] = []
        usage = self.usage
        if usage:
            events.append(
                Usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            )
        events.append(Finish(self.finish or ("tool_calls" if self.saw_tools else "stop")))
        return events


class OpenAIProvider(OpenAIExtras):
    """Chat completions (and embeddings, legacy completions) from an OpenAI-compatible API.

    Every gated field is passed through: the upstream decides (and its 400 is relayed).
    """

    default_model: str | None = None
    honours = frozenset(GATED_FIELDS)

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float = 120.0,
        *,
        name: str = "openai",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        headers = {"accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = HttpClient(
            self.base_url + "/",
            headers=headers,
            timeout=timeout,
            connect_timeout=min(timeout, 10.0),
            max_connections=max_connections,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        return cls(
            settings.openai_base_url or DEFAULT_BASE_URL,
            settings.openai_api_key,
            settings.upstream_timeout,
            max_connections=settings.upstream_max_connections,
        )

    def _scrub(self, text: str) -> str:
        return scrub(text, self.base_url, self._api_key)

    async def _error(self, response: Response) -> ProviderError:
        status = response.status
        detail = error_text(await response.read(), response.reason)
        log.warning("%s upstream %s returned %s: %s", self.name, self.base_url, status, detail)
        return ProviderError(
            f"{self.name} upstream returned {status}: {self._scrub(detail)}",
            provider=self.name,
            upstream_status=status,
        )

    def _transport_error(self, exc: HttpError) -> ProviderError:
        log.warning("%s upstream at %s failed: %s", self.name, self.base_url, exc)
        if isinstance(exc, ConnectTimeout):  # its text names the address: the log keeps it
            what = "connecting took too long"
        elif isinstance(exc, ConnectError):
            what = "could not connect"
        else:
            what = self._scrub(str(exc))
        if isinstance(exc, HttpTimeout):
            return ProviderTimeoutError(
                f"{self.name} upstream timed out: {what}", provider=self.name
            )
        return ProviderError(f"{self.name} upstream failed: {what}", provider=self.name)

    def _invalid(self, exc: Exception) -> ProviderError:
        log.warning("%s upstream at %s sent invalid data: %r", self.name, self.base_url, exc)
        return ProviderError(
            f"{self.name} upstream sent invalid data: {self._scrub(repr(exc))}", provider=self.name
        )

    async def list_models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get("models")
            if response.status >= 400:
                raise await self._error(response)
            entries = (await response.json()).get("data") or []
        except HttpError as exc:
            raise self._transport_error(exc) from None
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
                capabilities=capabilities_for(str(entry["id"])),
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
        stream = options is None or options.stream is not False
        body = _encode(build_request(messages, model, tools, options, stream))
        try:
            response = await self._client.post("chat/completions", body)
        except HttpError as exc:
            raise self._transport_error(exc) from None
        try:
            if response.status >= 400:
                raise await self._error(response)
            if not stream:
                for event in completion_events(orjson.loads(await response.read())):
                    yield event
                return
            parser = _SSEParser(self)
            feed = parser.feed
            receive = response.receive
            while chunk := await receive():
                for event in feed(chunk):
                    yield event
            for event in parser.end():  # the connection is back in the pool by now
                yield event
        except HttpError as exc:
            raise self._transport_error(exc) from None
        except (ValueError, AttributeError, TypeError) as exc:
            raise self._invalid(exc) from None
        finally:
            response.close()  # a no-op once the body was read to its end (and pooled)

    def _stream_error(self, error: Any) -> ProviderError:
        message = error.get("message") if isinstance(error, dict) else str(error)
        status = error.get("code") if isinstance(error, dict) else None
        log.warning("%s upstream at %s failed mid-stream: %s", self.name, self.base_url, message)
        return ProviderError(
            f"{self.name} upstream failed mid-stream: {self._scrub(str(message))}",
            provider=self.name,
            upstream_status=status if isinstance(status, int) else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
