"""OpenAI-compatible `/v1`: chat completions (JSON and SSE), the model list (docs/protocol.md §3).

The handler parses and validates the body, routes the request to a provider (so routing
errors get their status before any response starts), and hands the chat engine's event
stream to a disconnect-aware response that adapts it to OpenAI's wire shapes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from starlette.responses import Response

from nodetool.api.metrics import ROUTE_KEY, Metrics, metrics_of
from nodetool.api.openai_wire import (
    ChunkEncoder,
    completion_body,
    completion_id,
    dumps,
    gated_fields,
    model_entry,
    parse_request,
    to_messages,
    to_options,
    to_tool_specs,
)
from nodetool.api.request_user import user_id_of
from nodetool.api.sse import EventStreamResponse, TaskResponse
from nodetool.api.wire.chat import ModelEntry, ModelList
from nodetool.chat.engine import TurnRequest
from nodetool.errors import ModelNotFoundError, ProviderError
from nodetool.providers.base import check_fields
from nodetool.types.events import (
    ChatEvent,
    Done,
    MessageEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
)
from nodetool.types.messages import ModelInfo

if TYPE_CHECKING:
    from nodetool.chat.engine import ChatEngine
    from nodetool.providers.base import ChatProvider
    from nodetool.tools.base import Tool

router = APIRouter(tags=["openai"])

_JSON = "application/json"
CHAT_PATH = "/v1/chat/completions"


class _Turn:
    """One routed completion: what the adapters below need, and its metrics."""

    __slots__ = ("engine", "request", "route", "tools", "model", "metrics", "started")

    def __init__(
        self,
        engine: ChatEngine,
        request: TurnRequest,
        route: tuple[ChatProvider, str],
        tools: list[Tool],
        model: str,
        metrics: Metrics,
        started: float,
    ) -> None:
        self.engine = engine
        self.request = request
        self.route = route
        self.tools = tools
        self.model = model
        self.metrics = metrics
        self.started = started

    def batches(self) -> AsyncIterator[list[ChatEvent]]:
        """The turn's events, in the engine's lists (see `ChatEngine.stream_turn_batches`)."""
        return self.engine.stream_turn_batches(self.request, self.route, self.tools)

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, ProviderError):
            self.metrics.upstream_error(exc.provider or self.route[0].name, exc.code)


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions` (a plain Starlette route: no per-request dependency solving)."""
    started = time.perf_counter()
    request.scope[ROUTE_KEY] = CHAT_PATH
    wire = parse_request(await request.body())
    runtime = request.app.state.runtime
    engine: ChatEngine = runtime.engine
    options = to_options(wire)
    turn_request = TurnRequest(
        messages=to_messages(wire),
        model=wire.model,
        provider=wire.provider,
        options=options,
        client_tools=to_tool_specs(wire),
        user_id=user_id_of(request.scope),
    )
    route = await engine.resolve(turn_request)
    check_fields(route[0], gated_fields(wire, options))
    tools = await engine.server_tools(turn_request)
    model = wire.model or route[1]
    turn = _Turn(engine, turn_request, route, tools, model, metrics_of(request.app), started)
    if wire.stream:
        options = wire.stream_options
        encoder = ChunkEncoder(completion_id(), turn.model, bool(options and options.include_usage))
        return EventStreamResponse(
            _stream(turn, encoder), keepalive=runtime.settings.keepalive_interval
        )
    return TaskResponse(_complete(turn))


router.add_route(CHAT_PATH, chat_completions, methods=["POST"])


async def _stream(turn: _Turn, encoder: ChunkEncoder) -> AsyncIterator[str]:
    """The engine's events as `chat.completion.chunk` SSE events (role first, finish, usage);
    the chunks made from one batch of events are yielded together, as one string."""
    metrics = turn.metrics
    metrics.inflight.inc()
    head: str | None = encoder.role()
    first: float | None = None
    usage = None
    held: str | None = None  # with logprobs: a text delta waits for its tokens' logprobs
    with_logprobs = bool(turn.request.options.logprobs)
    content = encoder.content
    try:
        async with aclosing(turn.batches()) as batches:
            async for batch in batches:
                parts: list[str] = []
                texts: list[str] = []  # a run of plain content deltas, encoded together
                ended = False
                for event in batch:
                    kind = type(event)
                    if kind is TextDelta:
                        text = event.text
                        if not text:
                            continue
                        if not with_logprobs:
                            texts.append(text)
                            continue
                        if held is not None:  # held until its tokens' logprobs arrive
                            parts.append(content(held))
                        held = text
                        continue
                    if texts:
                        parts.append(encoder.contents(texts))
                        texts = []
                    if kind is TokenLogprobs:
                        out = encoder.content_logprobs(held or "", event.content)
                        held = None
                    elif kind is ToolCallDelta:
                        out = encoder.tool_call(event)
                    elif kind is Done:
                        usage = event.usage
                        out = encoder.finish(event.finish_reason or "stop")
                        if encoder.include_usage:
                            out += encoder.usage(usage)
                    else:  # server-side tool activity is invisible to OpenAI clients
                        continue
                    if held is not None:
                        parts.append(content(held))
                        held = None
                    if kind is Done:
                        ended = True
                        if first is None and parts:
                            first = time.perf_counter()
                    parts.append(out)
                if texts:
                    parts.append(encoder.contents(texts))
                if not parts:
                    continue
                if first is None and not ended:
                    first = time.perf_counter()
                if head is not None:
                    parts[0] = head + parts[0]
                    head = None
                yield "".join(parts)
    except Exception as exc:
        turn.failed(exc)
        raise
    finally:
        metrics.inflight.dec()
        metrics.chat_done(
            turn.route[0].name,
            True,
            turn.started,
            first,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )


async def _complete(turn: _Turn) -> bytes:
    """Run the whole turn and build the `chat.completion` object."""
    parts: list[str] = []
    logprobs: list[dict] = []
    reply = None
    done: Done | None = None
    first: float | None = None
    try:
        async with aclosing(turn.batches()) as batches:
            async for batch in batches:
                for event in batch:
                    kind = type(event)
                    if kind is TextDelta:
                        if first is None:
                            first = time.perf_counter()
                        parts.append(event.text)
                    elif kind is TokenLogprobs:
                        logprobs.extend(event.content)
                    elif kind is MessageEvent:
                        reply = event.message
                    elif kind is Done:
                        done = event
    except Exception as exc:
        turn.failed(exc)
        raise
    finally:
        usage = done.usage if done is not None else None
        turn.metrics.chat_done(
            turn.route[0].name,
            False,
            turn.started,
            first,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )
    finish = (done.finish_reason if done is not None else None) or "stop"
    calls = reply.tool_calls if finish == "tool_calls" and reply is not None else None
    content: str | None = "".join(parts)
    if calls and not content:
        content = None
    wanted = turn.request.options.logprobs
    return completion_body(
        completion_id(), turn.model, content, calls, finish, usage, logprobs if wanted else None
    )


# ---- models -----------------------------------------------------------------------------


def _entries(models: list[ModelInfo]) -> list[dict]:
    """Model entries; an id served by several providers is listed as `provider/id` each."""
    counts: dict[str, int] = {}
    for m in models:
        counts[m.id] = counts.get(m.id, 0) + 1
    return [
        model_entry(
            m.id if counts[m.id] == 1 else f"{m.provider}/{m.id}",
            m.created,
            m.owned_by or m.provider,
            m.status,
            m.capabilities,
        )
        for m in models
    ]


@router.get("/v1/models", responses={200: {"model": ModelList}})
async def list_models(request: Request) -> Response:
    models = await request.app.state.runtime.providers.list_models()
    return Response(dumps({"object": "list", "data": _entries(models)}), media_type=_JSON)


@router.get("/v1/models/{model_id:path}", responses={200: {"model": ModelEntry}})
async def retrieve_model(model_id: str, request: Request) -> Response:
    models = await request.app.state.runtime.providers.list_models()
    for m in models:
        if model_id in (m.id, f"{m.provider}/{m.id}"):
            entry = model_entry(
                model_id, m.created, m.owned_by or m.provider, m.status, m.capabilities
            )
            return Response(dumps(entry), media_type=_JSON)
    raise ModelNotFoundError(
        f"The model '{model_id}' does not exist or you do not have access to it.",
        param="model",
    )
