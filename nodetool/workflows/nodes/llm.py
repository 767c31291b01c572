"""Language-model nodes: `nodetool.agents.Agent` and `nodetool.generators.ListGenerator`.

Both call the providers (the node's `model`, else the server default) and stream: the Agent
emits every text delta on its `chunk` output (and as an `output_update` named `chunk`) before
the whole text on `text`; the ListGenerator emits each list item as soon as it is complete.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from nodetool.types.events import TextDelta
from nodetool.types.messages import ChatOptions, Message
from nodetool.workflows.nodes.base import BaseNode, NodeContext, as_text
from nodetool.workflows.registry import register

_LIST_SYSTEM = (
    "You generate lists. Answer with a numbered list only, one item per line "
    "(1. ..., 2. ...). If the user asks for a number of items, give exactly that many."
)
_ITEM = re.compile(r"^(?:\d+[.)]|[-*\u2022])\s+(.*)$")


def _options(values: dict[str, Any]) -> ChatOptions:
    max_tokens = values.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        return ChatOptions(max_tokens=max_tokens)
    return ChatOptions()


def _history(value: Any) -> list[Message]:
    messages = []
    for item in value or []:
        if isinstance(item, dict) and item.get("role") in ("system", "user", "assistant"):
            messages.append(Message(role=item["role"], content=as_text(item)))
    return messages


async def _stream_text(
    ctx: NodeContext, model: Any, messages: list[Message], options: ChatOptions
) -> AsyncIterator[str]:
    provider, model_id = await ctx.resolve_model(model)
    async for event in provider.stream_chat(messages, model_id, None, options):
        if isinstance(event, TextDelta) and event.text:
            yield event.text


@register
class Agent(BaseNode):
    """One LLM call: `system` + `history` + `prompt`; streams `chunk`, then `text`."""

    type_name = "nodetool.agents.Agent"
    inputs = {
        "model": {},
        "system": "You are a helpful assistant.",
        "prompt": "",
        "history": [],
        "max_tokens": 4096,
        "image": None,
        "audio": None,
        "thread_id": None,
    }
    outputs = ("text", "chunk", "thinking", "audio")
    required = ("prompt",)
    uses_models = True

    async def run(self, ctx: NodeContext, values: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        messages = []
        system = as_text(values.get("system"))
        if system:
            messages.append(Message(role="system", content=system))
        messages.extend(_history(values.get("history")))
        messages.append(Message(role="user", content=as_text(values.get("prompt"))))
        parts: list[str] = []
        async for text in _stream_text(ctx, values.get("model"), messages, _options(values)):
            parts.append(text)
            ctx.output_update("chunk", text)
            yield "chunk", text
        yield "text", "".join(parts)


class ListParser:
    """Splits streamed text into list items (`1. x`, `2) y`, `- z`; continuation lines join)."""

    __slots__ = ("_buffer", "_current", "_loose", "found")

    def __init__(self) -> None:
        self._buffer = ""
        self._current: str | None = None
        self._loose: list[str] = []
        self.found = 0

    def feed(self, text: str) -> list[str]:
        """The items completed by this piece of text."""
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        done: list[str] = []
        for line in lines:
            self._line(line, done)
        return done

    def finish(self) -> list[str]:
        """The remaining items; text without any list markers gives one item per line."""
        done: list[str] = []
        self._line(self._buffer, done)
        self._buffer = ""
        if self._current is not None:
            done.append(self._current)
            self._current = None
        if not self.found and not done:
            done = self._loose
        return done

    def _line(self, line: str, done: list[str]) -> None:
        text = line.strip()
        if not text:
            return
        match = _ITEM.match(text)
        if match:
            if self._current is not None:
                done.append(self._current)
            self._current = match.group(1).strip()
            self.found += 1
        elif self._current is not None:
            self._current += " " + text
        else:
            self._loose.append(text)


@register
class ListGenerator(BaseNode):
    """Asks the model for a list; streams each item on `item` with its `index`, then `list`."""

    type_name = "nodetool.generators.ListGenerator"
    inputs = {"model": {}, "prompt": "", "input_text": "", "max_tokens": 4096}
    outputs = ("item", "index", "list", "items")
    required = ("prompt",)
    uses_models = True

    async def run(self, ctx: NodeContext, values: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        prompt = as_text(values.get("prompt"))
        extra = as_text(values.get("input_text"))
        messages = [
            Message(role="system", content=_LIST_SYSTEM),
            Message(role="user", content=f"{prompt}\n\n{extra}" if extra else prompt),
        ]
        parser = ListParser()
        items: list[str] = []
        stream = _stream_text(ctx, values.get("model"), messages, _options(values))
        async for text in stream:
            for item in parser.feed(text):
                for pair in self._emit(ctx, items, item):
                    yield pair
        for item in parser.finish():
            for pair in self._emit(ctx, items, item):
                yield pair
        yield "list", items

    @staticmethod
    def _emit(ctx: NodeContext, items: list[str], item: str) -> list[tuple[str, Any]]:
        index = len(items)
        items.append(item)
        ctx.output_update("item", item)
        return [("item", item), ("items", item), ("index", index)]
