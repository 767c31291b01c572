"""Assemble a provider's event stream into one result (what the tests check a provider by)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nodetool.providers.base import ToolCallAccumulator
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import Message


@dataclass(slots=True)
class ChatResult:
    """A whole completion assembled from a provider stream."""

    message: Message
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    logprobs: list[dict] | None = None  # OpenAI chat shape, when asked for


async def collect(stream: AsyncIterator[ProviderEvent]) -> ChatResult:
    """Text joined, tool calls assembled, the last usage and finish reason kept."""
    parts: list[str] = []
    logprobs: list[dict] = []
    tools = ToolCallAccumulator()
    usage = Usage()
    finish: FinishReason | None = None
    async for event in stream:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallDelta):
            tools.add(event)
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Finish):
            finish = event.reason
        elif isinstance(event, TokenLogprobs):
            logprobs.extend(event.content)
    calls = tools.calls() if tools else None
    if finish is None:
        finish = "tool_calls" if calls else "stop"
    content = "".join(parts) if parts or not calls else None
    message = Message(role="assistant", content=content, tool_calls=calls)
    return ChatResult(message=message, finish_reason=finish, usage=usage, logprobs=logprobs or None)
