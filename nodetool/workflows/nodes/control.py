"""Control nodes: `nodetool.control.ForEach` (a list as a stream) and `Collect` (back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from nodetool.workflows.limits import LimitExceeded, WorkflowLimits
from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register

PROGRESS_STEPS = 100  # at most this many progress events per ForEach run


@register
class ForEach(BaseNode):
    """Emits each item of `input_list` on `output`, with its position on `index`.

    At most `max_foreach_items` items (a string counts its characters); progress is reported
    in about `PROGRESS_STEPS` steps.
    """

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
        limit = (ctx.run.limits or WorkflowLimits.from_settings(ctx.run.settings)).max_foreach_items
        if total > limit:
            raise LimitExceeded(f"input_list has {total} items", "max_foreach_items", limit)
        step = max(1, total // PROGRESS_STEPS)
        for index, item in enumerate(items):
            yield "output", item
            yield "index", index
            if (index + 1) % step == 0 or index + 1 == total:
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
