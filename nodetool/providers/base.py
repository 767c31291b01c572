"""The ChatProvider protocol and the one place non-streaming results are assembled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from nodetool.types.messages import (
    ChatOptions,
    FunctionCall,
    Message,
    ModelInfo,
    ToolCall,
    ToolSpec,
)


@runtime_checkable
class ChatProvider(Protocol):
    """A source of chat completions. Implementations: openai, ollama, local."""

    name: str

    async def list_models(self) -> list[ModelInfo]:
        """The models this provider serves."""
        ...

    def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        """Stream typed events; raises nodetool.errors.ProviderError subclasses on failure.

        Closing the iterator (or cancelling its consumer) must close the upstream at once.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections and loaded models."""
        ...


class ToolCallAccumulator:
    """Assembles complete ToolCalls from deltas keyed by index."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        entry = self._calls.get(delta.index)
        if entry is None:
            entry = self._calls[delta.index] = ["", "", ""]
        if delta.id:
            entry[0] = delta.id
        if delta.name:
            entry[1] = delta.name
        if delta.arguments:
            entry[2] += delta.arguments

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        """The complete calls, by index; a missing id gets a generated one."""
        result = []
        for index in sorted(self._calls):
            call_id, name, arguments = self._calls[index]
            result.append(
                ToolCall(
                    id=call_id or f"call_{index}",
                    function=FunctionCall(name=name, arguments=arguments or "{}"),
                )
            )
        return result


@dataclass(slots=True)
class ChatResult:
    """A whole completion assembled from a provider stream."""

    message: Message
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)


async def collect(stream: AsyncIterator[ProviderEvent]) -> ChatResult:
    """Assemble a provider stream into one ChatResult (the non-streaming path)."""
    parts: list[str] = []
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
    calls = tools.calls() if tools else None
    if finish is None:
        finish = "tool_calls" if calls else "stop"
    message = Message(
        role="assistant", content="".join(parts) if parts or not calls else None, tool_calls=calls
    )
    return ChatResult(message=message, finish_reason=finish, usage=usage)
