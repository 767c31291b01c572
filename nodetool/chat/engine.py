"""One chat turn, written once: provider streaming, the tool loop, and the event stream.

Edges (OpenAI SSE, /chat frames, the terminal) adapt the events this yields. Persistence is the
caller's job: every message the turn produces is yielded as a MessageEvent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetool.providers.base import ChatProvider, ToolCallAccumulator
from nodetool.tools.base import Tool, ToolContext, ToolOutcome
from nodetool.types.events import (
    ChatEvent,
    Done,
    Finish,
    FinishReason,
    MessageEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    ToolResultEvent,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.tools.registry import ToolRegistry
    from nodetool.workflows.jobs import JobManager

ClientToolRunner = Callable[[ToolCall, dict[str, Any]], Awaitable[ToolOutcome]]

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
    server_tools: list[str] | None = None  # None: the server's --tools
    client_tools: list[ToolSpec] = field(default_factory=list)
    client_tool_runner: ClientToolRunner | None = None
    user_id: str = "1"
    thread_id: str | None = None


class ChatEngine:
    """Runs turns against the provider registry with the shared tool loop."""

    def __init__(
        self, settings: Settings, providers: ProviderRegistry, tools: ToolRegistry
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.tools = tools
        self.jobs: JobManager | None = None
        self.store = None

    def tool_context(self, req: TurnRequest) -> ToolContext:
        return ToolContext(
            user_id=req.user_id,
            settings=self.settings,
            store=self.store,
            jobs=self.jobs,
            thread_id=req.thread_id,
        )

    async def resolve(self, req: TurnRequest) -> tuple[ChatProvider, str]:
        """Route the request to a provider and model (errors before any streaming starts)."""
        return await self.providers.resolve(req.model, req.provider)

    async def server_tools(self, req: TurnRequest) -> list[Tool]:
        names = self.settings.tools if req.server_tools is None else req.server_tools
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
        provider, model_id = route or await self.resolve(req)
        tools = await self.server_tools(req) if server_tools is None else server_tools
        by_name = {tool.name: tool for tool in tools}
        client_names = {spec.name for spec in req.client_tools}
        specs = [tool.spec() for tool in tools] + list(req.client_tools)
        history = list(req.messages)
        total = Usage()
        cap = self.settings.max_tool_rounds
        for round_no in range(cap + 1):
            offered = specs or None
            if round_no == cap and round_no > 0:
                history.append(Message(role="system", content=CAP_NOTICE))
                offered = None
            text: list[str] = []
            calls = ToolCallAccumulator()
            finish: FinishReason | None = None
            returning: dict[int, int] = {}  # upstream index -> index shown to an OpenAI client
            names: dict[int, str] = {}
            stream = provider.stream_chat(history, model_id, offered, req.options)
            async with aclosing(stream):
                async for event in stream:
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                        yield event
                    elif isinstance(event, ToolCallDelta):
                        calls.add(event)
                        if event.name:
                            names[event.index] = event.name
                        name = names.get(event.index)
                        if req.client_tool_runner is None and name in client_names:
                            shown = returning.setdefault(event.index, len(returning))
                            yield ToolCallDelta(shown, event.id, event.name, event.arguments)
                    elif isinstance(event, Usage):
                        total.prompt_tokens += event.prompt_tokens
                        total.completion_tokens += event.completion_tokens
                    elif isinstance(event, Finish):
                        finish = event.reason
            content = "".join(text)
            if not calls:
                reply = Message(role="assistant", content=content)
                yield MessageEvent(reply, model=model_id, provider=provider.name)
                yield Done(finish_reason=finish or "stop", usage=total)
                return
            made = calls.calls()
            if req.client_tool_runner is None and any(c.name in client_names for c in made):
                shown_calls = [c for c in made if c.name in client_names]
                reply = Message(role="assistant", content=content or None, tool_calls=shown_calls)
                yield MessageEvent(reply, model=model_id, provider=provider.name)
                yield Done(finish_reason="tool_calls", usage=total)
                return
            assistant = Message(role="assistant", content=content or None, tool_calls=made)
            history.append(assistant)
            yield MessageEvent(assistant, model=model_id, provider=provider.name)
            async for event in self._run_calls(req, made, by_name, client_names, history):
                yield event
        yield Done(finish_reason="stop", usage=total)  # unreachable: the cap round has no tools

    async def _run_calls(
        self,
        req: TurnRequest,
        calls: list[ToolCall],
        tools: dict[str, Tool],
        client_names: set[str],
        history: list[Message],
    ) -> AsyncIterator[ChatEvent]:
        """Run one round's calls concurrently; results go to history in call order."""
        context = self.tool_context(req)
        jobs: list[Awaitable[ToolOutcome]] = []
        for call in calls:
            args = _parse_args(call)
            to_client = call.name in client_names and req.client_tool_runner is not None
            yield ToolCallStarted(call, args or {}, "client" if to_client else "server")
            if args is None:
                jobs.append(_failed("arguments are not a valid JSON object"))
            elif to_client:
                jobs.append(req.client_tool_runner(call, args))  # type: ignore[misc]
            elif call.name in tools:
                jobs.append(self.tools.execute(call, args, context, tools))
            else:
                jobs.append(_failed(f"unknown tool: {call.name}"))
        outcomes = await asyncio.gather(*jobs)
        for call, outcome in zip(calls, outcomes, strict=True):
            message = Message(
                role="tool", tool_call_id=call.id, name=call.name, content=outcome.content()
            )
            history.append(message)
            yield ToolResultEvent(call.id, call.name, outcome.ok, outcome.result, outcome.error)
            yield MessageEvent(message)


async def _failed(error: str) -> ToolOutcome:
    return ToolOutcome(ok=False, error=error)


def _parse_args(call: ToolCall) -> dict[str, Any] | None:
    try:
        return call.parsed_arguments()
    except (ValueError, json.JSONDecodeError):
        return None
