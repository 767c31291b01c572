"""Embeddings and legacy text completions against an OpenAI-compatible upstream.

A mixin for `OpenAIProvider` (which supplies `_client`, `name` and the error helpers): both are
plain pass-throughs of `/embeddings` and `/completions`. Legacy log probabilities
(`tokens`/`token_logprobs`/`top_logprobs` maps) are converted to the chat shape every
provider event uses (`TokenLogprobs`); the `/v1/completions` edge converts them back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from nodetool.errors import ProviderError
from nodetool.providers.base import Embeddings
from nodetool.providers.http_client import HttpError
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    Usage,
)
from nodetool.types.messages import ChatOptions

if TYPE_CHECKING:
    from nodetool.providers.http_client import HttpClient, Response

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed", "user")


def legacy_to_chat_logprobs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Legacy `{"tokens", "token_logprobs", "top_logprobs"}` as chat-shape token entries."""
    tokens = data.get("tokens") or []
    values = data.get("token_logprobs") or []
    tops = data.get("top_logprobs") or []
    out = []
    for index, token in enumerate(tokens):
        top = tops[index] if index < len(tops) and isinstance(tops[index], dict) else {}
        out.append(
            {
                "token": token,
                "logprob": values[index] if index < len(values) else None,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top.items()
                ],
            }
        )
    return out


def completion_request(
    prompt: str, model: str, options: ChatOptions | None, echo: bool
) -> dict[str, Any]:
    """The streaming `/completions` body."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if options is not None:
        for field in _SAMPLING:
            value = getattr(options, field)
            if value is not None:
                body[field] = value
        if options.logprobs:
            body["logprobs"] = options.top_logprobs or 0
    if echo:
        body["echo"] = True
    return body


class OpenAIExtras:
    """`embed` and `stream_completion` for an OpenAI-compatible provider."""

    name: str
    _client: HttpClient

    if TYPE_CHECKING:  # supplied by OpenAIProvider

        async def _error(self, response: Response) -> ProviderError: ...

        def _transport_error(self, exc: HttpError) -> ProviderError: ...

        def _invalid(self, exc: Exception) -> ProviderError: ...

    async def embed(
        self, inputs: Sequence[str], model: str, dimensions: int | None = None
    ) -> Embeddings:
        body: dict[str, Any] = {"model": model, "input": list(inputs), "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        try:
            response = await self._client.post("embeddings", json.dumps(body).encode())
            if response.status >= 400:
                raise await self._error(response)
            data = await response.json()
        except HttpError as exc:
            raise self._transport_error(exc) from None
        try:
            entries = sorted(data["data"], key=lambda entry: entry.get("index", 0))
            vectors = [[float(x) for x in entry["embedding"]] for entry in entries]
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._invalid(exc) from None
        if len(vectors) != len(inputs):
            raise self._invalid(ValueError(f"{len(vectors)} vectors for {len(inputs)} inputs"))
        return Embeddings(vectors, tokens)

    async def stream_completion(
        self, prompt: str, model: str, options: ChatOptions | None = None, echo: bool = False
    ) -> AsyncIterator[ProviderEvent]:
        body = json.dumps(completion_request(prompt, model, options, echo)).encode()
        try:
            response = await self._client.post("completions", body)
        except HttpError as exc:
            raise self._transport_error(exc) from None
        finish: FinishReason | None = None
        usage: dict[str, Any] | None = None
        pending = b""
        try:
            if response.status >= 400:
                raise await self._error(response)
            while chunk := await response.receive():
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    payload = line[5:].strip() if line.startswith(b"data:") else b""
                    if not payload or payload == b"[DONE]":
                        continue
                    data = json.loads(payload)
                    if data.get("usage"):
                        usage = data["usage"]
                    for choice in data.get("choices") or ():
                        if choice.get("text"):
                            yield TextDelta(choice["text"])
                        if choice.get("logprobs"):
                            yield TokenLogprobs(legacy_to_chat_logprobs(choice["logprobs"]))
                        if choice.get("finish_reason"):
                            finish = _FINISH.get(choice["finish_reason"], "stop")
        except HttpError as exc:
            raise self._transport_error(exc) from None
        except (ValueError, AttributeError, TypeError) as exc:
            raise self._invalid(exc) from None
        finally:
            response.close()
        if usage:
            yield Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        yield Finish(finish or "stop")
