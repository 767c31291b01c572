"""A scripted fake ChatProvider for chat-engine unit tests.

`enqueue()` one list of events per upcoming `stream_chat` call (FIFO). An item of a script may
be a provider event (yielded), an exception instance (raised), or an async callable (awaited,
e.g. to pause on an asyncio.Event). With nothing queued the model answers "ok".
Every call is recorded in `requests` (a copy of the messages, the offered tools and options).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from nodetool.types.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ModelInfo, ToolSpec

_ids = itertools.count(1)


@dataclass
class FakeRequest:
    messages: list[Message]
    model: str
    tools: list[ToolSpec] | None
    options: ChatOptions | None

    @property
    def tool_names(self) -> list[str] | None:
        return None if self.tools is None else [tool.name for tool in self.tools]

    def last(self, role: str) -> list[Message]:
        """The trailing run of messages with `role` (e.g. the tool results of the last round)."""
        run: list[Message] = []
        for message in reversed(self.messages):
            if message.role != role:
                break
            run.insert(0, message)
        return run


class FakeProvider:
    """A ChatProvider whose replies are scripted by the test."""

    def __init__(self, name: str = "fake", models: Sequence[str] = ("fake-model",)) -> None:
        self.name = name
        self.models = list(models)
        self.scripts: deque[list[Any]] = deque()
        self.requests: list[FakeRequest] = []
        self.closed = 0

    def enqueue(self, *scripts: list[Any]) -> FakeProvider:
        """Queue one script (list of events) per upcoming call."""
        for script in scripts:
            self.scripts.append(list(script))
        return self

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=model, provider=self.name) for model in self.models]

    async def stream_chat(
        self,
        messages: Sequence[Message],
        model: str,
        tools: Sequence[ToolSpec] | None = None,
        options: ChatOptions | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        self.requests.append(
            FakeRequest(
                [m.model_copy(deep=True) for m in messages],
                model,
                None if tools is None else list(tools),
                options,
            )
        )
        script = self.scripts.popleft() if self.scripts else reply("ok")
        for item in script:
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                await item()
                continue
            yield item

    async def aclose(self) -> None:
        self.closed += 1


def reply(text: str, *, chunks: int = 1, usage: tuple[int, int] | None = None) -> list[Any]:
    """A text answer in `chunks` deltas, then usage (optional) and Finish(stop)."""
    size = max(1, -(-len(text) // chunks))
    events: list[Any] = [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]
    if usage is not None:
        events.append(Usage(*usage))
    events.append(Finish("stop"))
    return events


def call(
    name: str, args: dict[str, Any] | str | None = None, *, id: str | None = None, index: int = 0
) -> list[Any]:
    """One tool call as streamed deltas: id+name first, then the arguments in two pieces.
    Ids are unique per call unless given; `id=""` sends none (the engine must make one)."""
    raw = args if isinstance(args, str) else json.dumps(args or {})
    half = len(raw) // 2
    return [
        ToolCallDelta(index, f"call_{name}_{next(_ids)}" if id is None else id or None, name, ""),
        ToolCallDelta(index, None, None, raw[:half]),
        ToolCallDelta(index, None, None, raw[half:]),
    ]


def calls(*items: tuple[str, dict[str, Any] | str], text: str = "") -> list[Any]:
    """A round of (name, args) calls (parallel when several), optional leading text."""
    events: list[Any] = [TextDelta(text)] if text else []
    for index, (name, args) in enumerate(items):
        events += call(name, args, index=index)
    events.append(Finish("tool_calls"))
    return events
