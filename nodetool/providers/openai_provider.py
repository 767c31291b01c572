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
from contextlib import aclosing
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
from nodetool.providers.openai_events import SSEParser, completion_events
from nodetool.providers.openai_extras import OpenAIExtras
from nodetool.types.events import ProviderEvent
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"


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

    def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        return _flatten(self.stream_chat_batches(messages, model, tools, options))

    async def stream_chat_batches(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[list[ProviderEvent]]:
        """`stream_chat`'s events in lists: those parsed from one received piece of the body
        together (never an empty list), so a consumer resumes once per piece, not per event."""
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
                yield completion_events(orjson.loads(await response.read()))
                return
            parser = SSEParser(self.name, self._stream_error)
            feed = parser.feed
            receive = response.receive
            while chunk := await receive():
                events = feed(chunk)
                if events:
                    yield events
            yield parser.end()  # the connection is back in the pool by now
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


async def _flatten(batches: AsyncIterator[list[ProviderEvent]]) -> AsyncIterator[ProviderEvent]:
    """The events of `batches` one by one (closing this closes `batches`)."""
    async with aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            for event in batch:
                yield event
