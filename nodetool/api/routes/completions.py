"""Legacy `POST /v1/completions`: a raw prompt completed as is (no chat template).

`prompt` is a string or an array of strings (one choice per prompt, in order); `max_tokens`,
`temperature`, `top_p`, `stop`, `seed`, `stream` (+ `stream_options.include_usage`) work for
every provider that completes raw text; `echo` and `logprobs` (legacy: an integer, the number
of alternatives per token) only where the provider honours them, else a 400 naming the field.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from nodetool.api.metrics import ROUTE_KEY
from nodetool.api.openai_wire import dumps
from nodetool.api.sse import EventStreamResponse, TaskResponse
from nodetool.api.wire.legacy import CompletionRequest
from nodetool.api.wire.problems import parse_body
from nodetool.errors import InvalidRequestError
from nodetool.providers.base import CompletionProvider, check_fields
from nodetool.types.events import Finish, TextDelta, TokenLogprobs, Usage
from nodetool.types.messages import ChatOptions

router = APIRouter(tags=["openai"])
PATH = "/v1/completions"


def parse(body: bytes) -> CompletionRequest:
    return parse_body(CompletionRequest, body)


def options_of(request: CompletionRequest) -> ChatOptions:
    stop = request.stop
    return ChatOptions.model_construct(
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_tokens,
        stop=[stop] if isinstance(stop, str) else stop,
        seed=request.seed,
        user=request.user,
        stream=bool(request.stream),
        logprobs=True if request.logprobs is not None else None,
        top_logprobs=request.logprobs,
        response_format=None,
        tool_choice=None,
        parallel_tool_calls=None,
    )


class LegacyLogprobs:
    """Chat-shape token logprobs gathered into the legacy object (offsets into the text)."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.tokens: list[str] = []
        self.values: list[float | None] = []
        self.tops: list[dict[str, float]] = []
        self.offsets: list[int] = []

    def add(self, content: list[dict[str, Any]]) -> dict[str, Any]:
        """Record tokens; returns the legacy object of just these tokens."""
        start = len(self.tokens)
        for entry in content:
            token = str(entry.get("token", ""))
            self.tokens.append(token)
            self.values.append(entry.get("logprob"))
            self.tops.append({t["token"]: t["logprob"] for t in entry.get("top_logprobs") or ()})
            self.offsets.append(self.offset)
            self.offset += len(token)
        return self.slice(start)

    def slice(self, start: int = 0) -> dict[str, Any]:
        return {
            "tokens": self.tokens[start:],
            "token_logprobs": self.values[start:],
            "top_logprobs": self.tops[start:],
            "text_offset": self.offsets[start:],
        }


class _Completion:
    def __init__(self, provider: CompletionProvider, model_id: str, wire: CompletionRequest):
        self.provider, self.model_id, self.wire = provider, model_id, wire
        self.id = "cmpl-" + secrets.token_hex(14)
        self.created = int(time.time())
        self.model = wire.model or model_id
        self.options = options_of(wire)
        self.prompts = [wire.prompt] if isinstance(wire.prompt, str) else wire.prompt
        self.usage = Usage()

    def _events(self, prompt: str) -> AsyncIterator[Any]:
        return self.provider.stream_completion(
            prompt, self.model_id, self.options, bool(self.wire.echo)
        )

    def _chunk(self, choices: list[dict[str, Any]], usage: dict | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": None,
        }
        if usage is not None:
            body["usage"] = usage
        return "data: " + dumps(body).decode() + "\n\n"

    def _add_usage(self, event: Usage) -> None:
        self.usage.prompt_tokens += event.prompt_tokens
        self.usage.completion_tokens += event.completion_tokens

    async def stream(self) -> AsyncIterator[str]:
        for index, prompt in enumerate(self.prompts):
            logprobs = LegacyLogprobs()
            async with aclosing(self._events(prompt)) as events:
                async for event in events:
                    kind = type(event)
                    if kind is TextDelta and event.text:
                        choice = {"index": index, "text": event.text, "logprobs": None}
                        yield self._chunk([{**choice, "finish_reason": None}])
                    elif kind is TokenLogprobs:
                        part = logprobs.add(event.content)
                        choice = {"index": index, "text": "", "logprobs": part}
                        yield self._chunk([{**choice, "finish_reason": None}])
                    elif kind is Usage:
                        self._add_usage(event)
                    elif kind is Finish:
                        choice = {"index": index, "text": "", "logprobs": None}
                        yield self._chunk([{**choice, "finish_reason": event.reason}])
        options = self.wire.stream_options
        if options is not None and options.include_usage:
            yield self._chunk([], self.usage.as_dict())

    async def complete(self) -> bytes:
        choices = []
        for index, prompt in enumerate(self.prompts):
            parts: list[str] = []
            logprobs = LegacyLogprobs()
            finish = "stop"
            async with aclosing(self._events(prompt)) as events:
                async for event in events:
                    kind = type(event)
                    if kind is TextDelta:
                        parts.append(event.text)
                    elif kind is TokenLogprobs:
                        logprobs.add(event.content)
                    elif kind is Usage:
                        self._add_usage(event)
                    elif kind is Finish:
                        finish = event.reason
            choices.append(
                {
                    "index": index,
                    "text": "".join(parts),
                    "logprobs": logprobs.slice() if self.wire.logprobs is not None else None,
                    "finish_reason": finish,
                }
            )
        body = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage.as_dict(),
            "system_fingerprint": None,
        }
        return dumps(body)


async def create_completion(request: Request) -> Response:
    request.scope[ROUTE_KEY] = PATH
    wire = parse(await request.body())
    runtime = request.app.state.runtime
    provider, model_id = await runtime.providers.resolve(wire.model, wire.provider)
    if not isinstance(provider, CompletionProvider):
        raise InvalidRequestError(
            f"The {provider.name} provider cannot complete a raw prompt; use "
            "/v1/chat/completions or a provider that can.",
            param="model",
            code="unsupported_model",
        )
    logprobs = True if wire.logprobs is not None else None
    check_fields(
        provider, {"echo": wire.echo, "logprobs": logprobs, "stop": wire.stop, "seed": wire.seed}
    )
    completion = _Completion(provider, model_id, wire)
    if wire.stream:
        keepalive = runtime.settings.keepalive_interval
        return EventStreamResponse(completion.stream(), keepalive=keepalive)
    return TaskResponse(completion.complete())


router.add_route(PATH, create_completion, methods=["POST"])
