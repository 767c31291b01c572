"""One chat turn, written once: provider streaming, the tool loop, and the event stream.

Edges (OpenAI SSE, /chat frames, the terminal) adapt the events this yields. Persistence is the
caller's job: every message the turn produces is yielded as a MessageEvent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetool.config import DEFAULT_USER
from nodetool.providers.base import ChatProvider, ToolCallAccumulator
from nodetool.tools.base import Tool, ToolContext, ToolOutcome
from nodetool.types.events import (
    ChatEvent,
    Done,
    Finish,
    FinishReason,
    MessageEvent,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    ToolCallStarted,
    ToolResultEvent,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ToolCall, ToolSpec
from nodetool.types.trusted import trusted

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.tools.registry import ToolRegistry

ClientToolRunner = Callable[[ToolCall, dict[str, Any]], Awaitable[ToolOutcome]]
ToolContextFactory = Callable[[str, str | None], ToolContext]  # (user_id, thread_id)

CAP_NOTICE = (
    "The tool-call limit for this turn has been reached. "
    "Answer the user now from the information you have, without calling tools."
)


@dataclass
class TurnRequest:
    """Everything one turn needs. `client_tools` follow OpenAI semantics unless a
    `client_tool_runner` bridges them (the /chat WebSocket)."""

    messages: list[Message]
    model: str | None = None
    provider: str | None = None
    options: ChatOptions = field(default_factory=ChatOptions)
    server_tools: list[str] | None = None  # None: the server's enabled tools
    client_tools: list[ToolSpec] = field(default_factory=list)
    client_tool_runner: ClientToolRunner | None = None
    user_id: str = DEFAULT_USER
    thread_id: str | None = None


class ChatEngine:
    """Runs turns against the provider registry with the shared tool loop."""

    def __init__(
        self,
        settings: Settings,
        providers: ProviderRegistry,
        tools: ToolRegistry,
        tool_context: ToolContextFactory | None = None,
    ) -> None:
        """`tool_context` makes the context a turn's tools run in (by default: the user's
        workspace and no store)."""
        self.settings = settings
        self.providers = providers
        self.tools = tools
        self._tool_context = tool_context or self._plain_context

    def _plain_context(self, user_id: str, thread_id: str | None) -> ToolContext:
        return ToolContext(user_id=user_id, settings=self.settings, thread_id=thread_id)

    def tool_context(self, req: TurnRequest) -> ToolContext:
        return self._tool_context(req.user_id, req.thread_id)

    async def resolve(self, req: TurnRequest) -> tuple[ChatProvider, str]:
        """Route the request to a provider and model (errors before any streaming starts)."""
        return await self.providers.resolve(req.model, req.provider)

    async def server_tools(self, req: TurnRequest) -> list[Tool]:
        names = self.tools.default_names() if req.server_tools is None else req.server_tools
        if not names:
            return []
        return await self.tools.resolve(names, self.tool_context(req))

    async def stream_turn(
        self,
        req: TurnRequest,
        route: tuple[ChatProvider, str] | None = None,
        server_tools: list[Tool] | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Yield the turn's events; ends with Done. Provider errors propagate as exceptions."""
        async with aclosing(self.stream_turn_batches(req, route, server_tools)) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def stream_turn_batches(
        self,
        req: TurnRequest,
        route: tuple[ChatProvider, str] | None = None,
        server_tools: list[Tool] | None = None,
    ) -> AsyncIterator[list[ChatEvent]]:
        """`stream_turn`'s events in lists (never empty): the events made from one batch of the
        provider's together, so a fast upstream costs a resumption per piece, not per event."""
        provider, model_id = route or await self.resolve(req)
        tools = await self.server_tools(req) if server_tools is None else server_tools
        client_names = {spec.name for spec in req.client_tools}
        # a client tool shadows a server tool of the same name (names must be unique upstream)
        by_name = {tool.name: tool for tool in tools if tool.name not in client_names}
        specs = [tool.spec() for tool in by_name.values()] + list(req.client_tools)
        history = list(req.messages)
        total = Usage()
        cap = self.settings.max_tool_rounds
        options = req.options
        for round_no in range(cap + 1):
            offered = specs or None
            final_round = round_no == cap
            if round_no == 1 and _forces_tools(options):
                # a forced tool_choice applies to the first round only, else the loop never ends
                options = options.model_copy(update={"tool_choice": None})
            if final_round:
                history.append(Message(role="system", content=CAP_NOTICE))
                offered = None
                options = options.model_copy(
                    update={"tool_choice": None, "parallel_tool_calls": None}
                )
            text: list[str] = []
            calls = ToolCallAccumulator()
            finish: FinishReason | None = None
            returning: dict[int, int] = {}  # upstream index -> index shown to an OpenAI client
            names: dict[int, str] = {}
            ids: dict[int, str] = {}
            stream = _batches(provider, history, model_id, offered, options)
            async with aclosing(stream):
                async for batch in stream:
                    out: list[ChatEvent] = []
                    for event in batch:
                        if isinstance(event, TextDelta):
                            text.append(event.text)
                            out.append(event)
                        elif isinstance(event, ToolCallDelta):
                            if final_round:
                                continue  # no tools were offered: the model must answer now
                            if event.index not in ids:
                                # ids must exist and be unique across the turn's rounds
                                ids[event.index] = event.id or _new_call_id()
                                event = ToolCallDelta(
                                    event.index, ids[event.index], event.name, event.arguments
                                )
                            calls.add(event)
                            if event.name:
                                names[event.index] = event.name
                            name = names.get(event.index)
                            if req.client_tool_runner is None and name in client_names:
                                first = event.index not in returning
                                shown = returning.setdefault(event.index, len(returning))
                                out.append(
                                    ToolCallDelta(
                                        shown,
                                        ids[event.index] if first else None,
                                        name if first else None,
                                        event.arguments,
                                    )
                                )
                        elif isinstance(event, TokenLogprobs):
                            out.append(event)
                        elif isinstance(event, Usage):
                            total.prompt_tokens += event.prompt_tokens
                            total.completion_tokens += event.completion_tokens
                        elif isinstance(event, Finish):
                            finish = event.reason
                    if out:
                        yield out
            content = "".join(text)
            if not calls:
                reply = trusted(Message, _reply(content))
                if finish is None or finish == "tool_calls":  # calls dropped in the cap round
                    finish = "stop"
                yield [
                    MessageEvent(reply, model=model_id, provider=provider.name),
                    Done(finish_reason=finish, usage=total),
                ]
                return
            made = calls.calls()
            if req.client_tool_runner is None and any(c.name in client_names for c in made):
                shown_calls = [c for c in made if c.name in client_names]
                reply = Message(role="assistant", content=content or None, tool_calls=shown_calls)
                yield [
                    MessageEvent(reply, model=model_id, provider=provider.name),
                    Done(finish_reason="tool_calls", usage=total),
                ]
                return
            assistant = Message(role="assistant", content=content or None, tool_calls=made)
            history.append(assistant)
            yield [MessageEvent(assistant, model=model_id, provider=provider.name)]
            async for event in self._run_calls(req, made, by_name, client_names, history):
                yield [event]
        yield [Done(finish_reason="stop", usage=total)]  # unreachable: the cap round ends it

    async def _run_calls(
        self,
        req: TurnRequest,
        calls: list[ToolCall],
        tools: dict[str, Tool],
        client_names: set[str],
        history: list[Message],
    ) -> AsyncIterator[ChatEvent]:
        """Run one round's calls concurrently. A result event is yielded as each call finishes;
        the tool messages go to history (and are yielded) in call order afterwards."""
        context = self.tool_context(req)
        jobs: list[Awaitable[ToolOutcome]] = []
        for call in calls:
            args = _parse_args(call)
            to_client = call.name in client_names and req.client_tool_runner is not None
            yield ToolCallStarted(call, args or {}, "client" if to_client else "server")
            if args is None:
                jobs.append(_failed("arguments are not a valid JSON object"))
            elif to_client:
                jobs.append(_run_client(req.client_tool_runner, call, args, context))  # type: ignore[arg-type]
            elif call.name in tools:
                jobs.append(self.tools.execute(call, args, context, tools))
            else:
                jobs.append(_failed(f"unknown tool: {call.name}"))
        tasks = [asyncio.ensure_future(job) for job in jobs]
        index = {task: i for i, task in enumerate(tasks)}
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=index.__getitem__):
                    call, outcome = calls[index[task]], task.result()
                    yield ToolResultEvent(
                        call.id, call.name, outcome.ok, outcome.result, outcome.error
                    )
        finally:
            for task in tasks:
                task.cancel()
        for call, task in zip(calls, tasks, strict=True):
            outcome = task.result()
            message = Message(
                role="tool", tool_call_id=call.id, name=call.name, content=outcome.content()
            )
            history.append(message)
            yield MessageEvent(message)


async def _failed(error: str) -> ToolOutcome:
    return ToolOutcome(ok=False, error=error)


async def _run_client(
    runner: ClientToolRunner, call: ToolCall, args: dict[str, Any], context: ToolContext
) -> ToolOutcome:
    """A bridged client tool; a failing runner becomes an error result, never a failed turn."""
    from nodetool.tools.results import json_safe

    try:
        outcome = await runner(call, args)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ToolOutcome(ok=False, error=f"client tool {call.name} failed: {exc}")
    if outcome.ok:
        outcome.result = json_safe(outcome.result, context)
    return outcome


def _batches(
    provider: ChatProvider,
    history: list[Message],
    model: str,
    tools: list[ToolSpec] | None,
    options: ChatOptions,
) -> AsyncIterator[list[ProviderEvent]]:
    """The provider's events in lists: from its `stream_chat_batches` when it has one (the
    events of one received piece together), else each event alone."""
    batched = getattr(provider, "stream_chat_batches", None)
    if batched is not None:
        return batched(history, model, tools, options)
    return _single(provider.stream_chat(history, model, tools, options))


async def _single(events: AsyncIterator[ProviderEvent]) -> AsyncIterator[list[ProviderEvent]]:
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            yield [event]


def _reply(content: str) -> dict[str, Any]:
    """The fields of a plain assistant answer (a `Message` of them needs no validation)."""
    return {
        "role": "assistant",
        "content": content,
        "name": None,
        "tool_calls": None,
        "tool_call_id": None,
    }


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _forces_tools(options: ChatOptions) -> bool:
    choice = options.tool_choice
    return choice == "required" or isinstance(choice, dict)


def _parse_args(call: ToolCall) -> dict[str, Any] | None:
    try:
        return call.parsed_arguments()
    except (ValueError, json.JSONDecodeError):
        return None
