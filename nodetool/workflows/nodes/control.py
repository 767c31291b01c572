"""Control nodes: `nodetool.control.ForEach` (a list as a stream) and `Collect` (back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register


@register
class ForEach(BaseNode):
    """Emits each item of `input_list` on `output`, with its position on `index`."""

    type_name = "nodetool.control.ForEach"
    inputs = {"input_list": []}
    outputs = ("output", "index")
    required = ("input_list",)

    async def run(self, ctx: NodeContext, values: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        items = values.get("input_list")
        if isinstance(items, dict):
            items = list(items.values())
        if not isinstance(items, list | tuple | str):
            raise ValueError(f"input_list must be a list, got {type(items).__name__}")
        total = len(items)
        for index, item in enumerate(items):
            yield "output", item
            yield "index", index
            ctx.progress(index + 1, total)


@register
class Collect(BaseNode):
    """Gathers every item that reaches `input_item` until the stream ends; emits the list."""

    type_name = "nodetool.control.Collect"
    inputs = {"input_item": None}
    required = ("input_item",)
    collect = ("input_item",)

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> list[Any]:
        return list(values.get("input_item") or [])
