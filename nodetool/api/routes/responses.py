"""OpenAI Responses API: `POST /v1/responses` (JSON and SSE), retrieve, delete, input items.

A response is one chat-engine turn, exactly like `/v1/chat/completions`: server tools
(`--tools`) run inside it, client function tools come back as `function_call` items. Stored
responses (`store`, default true) live in the database's `responses` table per user (on every
server, chat-server included); `previous_response_id` continues a stored conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from nodetool.api.metrics import ROUTE_KEY, Metrics, metrics_of
from nodetool.api.openai_wire import dumps
from nodetool.api.request_user import user_id_of
from nodetool.api.responses_stream import ResponseBuilder
from nodetool.api.responses_wire import (
    ResponsesRequest,
    gated_fields,
    gated_params,
    input_items,
    parse_request,
    to_messages,
    to_options,
    to_tool_specs,
)
from nodetool.api.sse import EventStreamResponse, TaskResponse
from nodetool.api.wire.responses import DeletedResponse, InputItemList, ResponseObject
from nodetool.chat.engine import TurnRequest
from nodetool.errors import (
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ProviderUnavailableError,
)
from nodetool.providers.base import check_fields
from nodetool.types.events import (
    Done,
    MessageEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
)
from nodetool.types.messages import Message

if TYPE_CHECKING:
    from nodetool.chat.engine import ChatEngine
    from nodetool.providers.base import ChatProvider
    from nodetool.storage.responses import ResponseStore
    from nodetool.tools.base import Tool

router = APIRouter(tags=["openai"])
log = logging.getLogger(__name__)

PATH = "/v1/responses"
_JSON = "application/json"


def response_store(request: Request) -> ResponseStore:
    """The runtime's stored responses (built at startup from the settings' database)."""
    store = request.app.state.runtime.responses
    if store is None:
        raise ProviderUnavailableError("this server does not store responses")
    return store


class _Run:
    """One routed response: the engine turn, the builder, storage and metrics."""

    def __init__(
        self,
        engine: ChatEngine,
        turn: TurnRequest,
        route: tuple[ChatProvider, str],
        tools: list[Tool],
        builder: ResponseBuilder,
        wire: ResponsesRequest,
        store: ResponseStore,
        metrics: Metrics,
        started: float,
    ) -> None:
        self.engine, self.turn, self.route, self.tools = engine, turn, route, tools
        self.builder, self.wire, self.store = builder, wire, store
        self.metrics, self.started = metrics, started
        self.produced: list[Message] = []
        self.first: float | None = None
        self.done: Done | None = None

    async def events(self) -> AsyncIterator[str]:
        """Builder output for the engine's events, in one generator (the stream's hot path):
        one string per batch of events.

        Streaming (`builder.emit`), a failure becomes a `response.failed` event (stored too);
        otherwise it propagates, to become the HTTP error."""
        b = self.builder
        emit = b.emit
        if emit:
            self.metrics.inflight.inc()
        try:
            if emit:
                yield b.start()
            stream = self.engine.stream_turn_batches(self.turn, self.route, self.tools)
            async with aclosing(stream) as batches:
                async for batch in batches:
                    outs: list[str] = []  # the events of one batch leave as one string
                    for event in batch:
                        kind = type(event)
                        if kind is TextDelta:
                            if not event.text:
                                continue
                            if self.first is None:
                                self.first = time.perf_counter()
                            out = b.text(event.text)
                        elif kind is TokenLogprobs:
                            b.logprobs(event.content)
                            continue
                        elif kind is ToolCallDelta:
                            out = b.tool_call(event)
                        elif kind is MessageEvent:
                            self.produced.append(event.message)
                            if not event.message.tool_calls:
                                continue
                            out = b.boundary()
                        elif kind is Done:
                            if outs:  # what came before is out before the store is written
                                yield "".join(outs)
                                outs = []
                            self.done = event
                            out = b.finish(event.finish_reason, event.usage)
                            await self.save()  # before `response.completed` reaches the client
                        else:
                            continue
                        if out:
                            outs.append(out)
                    if outs:
                        yield "".join(outs)
        except Exception as exc:
            self.failed(exc)
            if not emit:
                raise
            out = b.fail(exc)
            try:
                await self.save()
            except Exception:  # the failure event matters more than storing it
                log.exception("storing failed response %s", b.id)
            yield out
        finally:
            if emit:
                self.metrics.inflight.dec()
            self.record(emit)

    async def save(self) -> None:
        if not self.builder.store:
            return
        sent = self.turn.messages[1:] if self.wire.instructions else self.turn.messages
        history = [_stored_message(m) for m in sent + self.produced]
        b, wire = self.builder, self.wire
        await self.store.save_encoded(
            self.turn.user_id,
            b.id,
            wire.previous_response_id,
            b.final_json,
            input_items(wire),
            history,
        )

    def record(self, stream: bool) -> None:
        usage = self.done.usage if self.done is not None else None
        self.metrics.chat_done(
            self.route[0].name,
            stream,
            self.started,
            self.first,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, ProviderError):
            self.metrics.upstream_error(exc.provider or self.route[0].name, exc.code)

    async def complete(self) -> bytes:
        """The whole `response` object; a failure is an HTTP error (nothing is stored)."""
        async with aclosing(self.events()) as events:
            async for _ in events:
                pass
        return self.builder.final_json.encode()


def _stored_message(message: Message) -> dict[str, Any]:
    """`message.model_dump(mode="json", exclude_none=True)`; a plain text message directly."""
    content = message.content
    if message.tool_calls is None and type(content) is str:
        out: dict[str, Any] = {"role": message.role, "content": content}
        if message.name is not None:
            out["name"] = message.name
        if message.tool_call_id is not None:
            out["tool_call_id"] = message.tool_call_id
        return out
    return message.model_dump(mode="json", exclude_none=True)


async def create_response(request: Request) -> Response:
    """`POST /v1/responses` (a plain Starlette route, like chat completions)."""
    started = time.perf_counter()
    request.scope[ROUTE_KEY] = PATH
    wire = parse_request(await request.body())
    runtime = request.app.state.runtime
    engine: ChatEngine = runtime.engine
    store = response_store(request)
    user_id = user_id_of(request.scope)
    history: list[Message] = []
    if wire.previous_response_id:
        record = await store.get(user_id, wire.previous_response_id)
        if record is None:
            raise InvalidRequestError(
                f"Previous response with id '{wire.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = [Message.model_validate(m) for m in record["history"]]
    options = to_options(wire)
    turn = TurnRequest(
        messages=to_messages(wire, history),
        model=wire.model,
        provider=wire.provider,
        options=options,
        client_tools=to_tool_specs(wire),
        user_id=user_id,
    )
    route = await engine.resolve(turn)
    check_fields(route[0], gated_fields(wire, options), params=gated_params(wire))
    tools = await engine.server_tools(turn)
    save = wire.store is not False
    builder = ResponseBuilder(wire, wire.model or route[1], emit=bool(wire.stream), store=save)
    run = _Run(engine, turn, route, tools, builder, wire, store, metrics_of(request.app), started)
    if wire.stream:
        keepalive = runtime.settings.keepalive_interval
        return EventStreamResponse(run.events(), keepalive=keepalive, done="")
    return TaskResponse(run.complete())


router.add_route(PATH, create_response, methods=["POST"])


async def _stored(request: Request, response_id: str) -> dict[str, Any]:
    record = await response_store(request).get(user_id_of(request.scope), response_id)
    if record is None:
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    return record


@router.get(PATH + "/{response_id}", responses={200: {"model": ResponseObject}})
async def retrieve_response(response_id: str, request: Request) -> Response:
    record = await _stored(request, response_id)
    return Response(dumps(record["response"]), media_type=_JSON)


@router.delete(PATH + "/{response_id}", responses={200: {"model": DeletedResponse}})
async def delete_response(response_id: str, request: Request) -> Response:
    if not await response_store(request).delete(user_id_of(request.scope), response_id):
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return Response(dumps(body), media_type=_JSON)


@router.get(PATH + "/{response_id}/input_items", responses={200: {"model": InputItemList}})
async def list_input_items(
    response_id: str,
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> Response:
    """The request's input items, newest first by default (`order=asc` for oldest first)."""
    items = list((await _stored(request, response_id))["input_items"])
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequestError(f"Invalid 'after': no item '{after}'.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    body = {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > len(page),
    }
    return Response(dumps(body), media_type=_JSON)
