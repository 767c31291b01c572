"""`ollama` provider: Ollama's native `/api/chat` (NDJSON streaming, tools), `/api/tags`,
`/api/embed` (embeddings) and `/api/generate` with `raw` (legacy completions).

Not honoured (a 400 naming the field): logprobs, top_logprobs, echo, dimensions, and a forced
`tool_choice` (`required` or a named function: Ollama cannot force a call).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError, ProviderError, ProviderTimeoutError
from nodetool.providers.base import DEFAULT_HONOURS, Embeddings, capabilities_for, scrub
from nodetool.providers.openai_provider import upstream_message
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

log = logging.getLogger(__name__)
DEFAULT_PORT = 11434
_decode = json.JSONDecoder().decode


def normalize_host(host: str) -> str:
    """OLLAMA_HOST as a base URL, read as Ollama does: `host[:port]` defaults to port 11434,
    a URL with a scheme to its scheme's port."""
    host = host.strip().rstrip("/")
    port = DEFAULT_PORT
    if "://" not in host:
        host = f"http://{host}"
    elif host.startswith(("http://", "https://")):
        port = 443 if host.startswith("https") else 80
    scheme, _, rest = host.partition("://")
    authority, slash, path = rest.partition("/")
    if ":" not in authority.rsplit("]", 1)[-1]:
        authority = f"{authority}:{port}"
    return f"{scheme}://{authority}{slash}{path}"


def _images(parts: list[dict[str, Any]]) -> list[str]:
    images = []
    for part in parts:
        if part.get("type") != "image_url":
            continue
        image = part.get("image_url")
        url = image.get("url", "") if isinstance(image, dict) else str(image or "")
        if not url.startswith("data:") or "," not in url:
            raise InvalidRequestError(
                "the ollama provider accepts images only as base64 data: URLs", param="messages"
            )
        images.append(url.split(",", 1)[1])
    return images


def messages_to_wire(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in Ollama's shape: text content, `images`, `tool_calls`, `tool_name`."""
    names: dict[str, str] = {}
    wire = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.text()}
        if isinstance(message.content, list):
            images = _images(message.content)
            if images:
                entry["images"] = images
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                names[call.id] = call.function.name
                try:
                    arguments = call.parsed_arguments()
                except ValueError:
                    arguments = {}
                calls.append({"function": {"name": call.function.name, "arguments": arguments}})
            entry["tool_calls"] = calls
        if message.role == "tool" and message.tool_call_id in names:
            entry["tool_name"] = names[message.tool_call_id]
        wire.append(entry)
    return wire


def build_request(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[ToolSpec] | None,
    options: ChatOptions | None,
) -> dict[str, Any]:
    """The streaming `/api/chat` request body."""
    body: dict[str, Any] = {"model": model, "messages": messages_to_wire(messages), "stream": True}
    opts = options or ChatOptions()
    if tools and opts.tool_choice != "none":
        body["tools"] = [tool.openai() for tool in tools]
    sampling = sampling_options(opts)
    if sampling:
        body["options"] = sampling
    fmt = opts.response_format or {}
    if fmt.get("type") == "json_object":
        body["format"] = "json"
    elif fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        body["format"] = schema if isinstance(schema, dict) else "json"
    return body


def sampling_options(opts: ChatOptions) -> dict[str, Any]:
    """ChatOptions as Ollama's `options` (only the values that are set)."""
    mapped = {
        "temperature": opts.temperature,
        "top_p": opts.top_p,
        "num_predict": opts.max_tokens,
        "stop": opts.stop,
        "seed": opts.seed,
    }
    return {key: value for key, value in mapped.items() if value is not None}


def _created(stamp: Any) -> int:
    if not isinstance(stamp, str):
        return 0
    head, dot, tail = stamp.partition(".")
    if dot:  # Ollama sends nanoseconds; keep microseconds for fromisoformat
        digits = len(tail) - len(tail.lstrip("0123456789"))
        stamp = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class OllamaProvider:
    """Chat completions from an Ollama server."""

    name = "ollama"
    default_model: str | None = None
    honours = DEFAULT_HONOURS | {"response_format"}  # `format`; no forced tool choice

    def __init__(self, host: str, settings: Settings | None = None) -> None:
        timeout = settings.upstream_timeout if settings is not None else 120.0
        self.base_url = normalize_host(host)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        detail = upstream_message(response)
        log.warning("ollama at %s returned %s: %s", self.base_url, status, detail)
        return ProviderError(
            f"ollama returned {status}: {scrub(detail, self.base_url)}",
            provider=self.name,
            upstream_status=status,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        log.warning("ollama at %s failed: %r", self.base_url, exc)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeoutError("ollama timed out", provider=self.name)
        if isinstance(exc, httpx.ConnectError):
            return ProviderError("cannot connect to ollama", provider=self.name)
        return ProviderError(f"ollama failed: {type(exc).__name__}", provider=self.name)

    async def list_models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get("/api/tags")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            entries = response.json().get("models") or []
        except (ValueError, AttributeError):
            raise ProviderError("ollama sent an invalid model list", provider=self.name) from None
        return [
            ModelInfo(
                id=str(entry.get("name") or entry.get("model")),
                provider=self.name,
                created=_created(entry.get("modified_at")),
                owned_by="ollama",
                capabilities=capabilities_for(str(entry.get("name") or entry.get("model"))),
            )
            for entry in entries
            if isinstance(entry, dict) and (entry.get("name") or entry.get("model"))
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
            async with self._client.stream("POST", "/api/chat", json=body) as response:
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
                f"ollama sent invalid stream data: {exc}", provider=self.name
            ) from None
        for event in tail:
            yield event

    async def _events(self, response: httpx.Response) -> AsyncIterator[ProviderEvent]:
        """Parse NDJSON lines; Usage and Finish come last."""
        next_index = 0
        final: dict[str, Any] | None = None
        pending = b""
        async for chunk in response.aiter_bytes():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line.strip():
                    continue
                data = _decode(line.decode())
                if data.get("error"):
                    raise ProviderError(
                        f"ollama failed: {scrub(str(data['error']), self.base_url)}",
                        provider=self.name,
                    )
                message = data.get("message") or {}
                content = message.get("content")
                if content:
                    yield TextDelta(content)
                for call in message.get("tool_calls") or ():
                    function = call.get("function") or {}
                    arguments = function.get("arguments", {})
                    yield ToolCallDelta(
                        next_index,
                        f"call_{uuid.uuid4().hex[:24]}",
                        function.get("name"),
                        arguments if isinstance(arguments, str) else json.dumps(arguments),
                    )
                    next_index += 1
                if data.get("done"):
                    final = data
        if final is None:
            raise ProviderError("ollama closed the stream before it finished", provider=self.name)
        yield Usage(int(final.get("prompt_eval_count") or 0), int(final.get("eval_count") or 0))
        reason: FinishReason = "length" if final.get("done_reason") == "length" else "stop"
        yield Finish("tool_calls" if next_index else reason)

    async def embed(
        self, inputs: Sequence[str], model: str, dimensions: int | None = None
    ) -> Embeddings:
        """`/api/embed` (Ollama L2-normalises the vectors)."""
        try:
            response = await self._client.post(
                "/api/embed", json={"model": model, "input": list(inputs)}
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            data = response.json()
            vectors = [[float(x) for x in vector] for vector in data["embeddings"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"ollama sent invalid embeddings: {exc!r}", provider=self.name
            ) from None
        if len(vectors) != len(inputs):
            raise ProviderError(
                f"ollama sent {len(vectors)} vectors for {len(inputs)} inputs", provider=self.name
            )
        return Embeddings(vectors, int(data.get("prompt_eval_count") or 0))

    async def stream_completion(
        self, prompt: str, model: str, options: ChatOptions | None = None, echo: bool = False
    ) -> AsyncIterator[ProviderEvent]:
        """`/api/generate` with `raw: true`: the prompt exactly as given, no template."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "raw": True, "stream": True}
        sampling = sampling_options(options or ChatOptions())
        if sampling:
            body["options"] = sampling
        final: dict[str, Any] | None = None
        try:
            async with self._client.stream("POST", "/api/generate", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    data = _decode(line)
                    if data.get("error"):
                        raise ProviderError(
                            f"ollama failed: {scrub(str(data['error']), self.base_url)}",
                            provider=self.name,
                        )
                    if data.get("response"):
                        yield TextDelta(data["response"])
                    if data.get("done"):
                        final = data
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        except (ValueError, AttributeError) as exc:
            raise ProviderError(
                f"ollama sent invalid stream data: {exc}", provider=self.name
            ) from None
        if final is None:
            raise ProviderError("ollama closed the stream before it finished", provider=self.name)
        yield Usage(int(final.get("prompt_eval_count") or 0), int(final.get("eval_count") or 0))
        yield Finish("length" if final.get("done_reason") == "length" else "stop")

    async def aclose(self) -> None:
        await self._client.aclose()
