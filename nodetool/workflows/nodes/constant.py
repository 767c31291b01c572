"""Constant nodes: `nodetool.constant.String`, `Integer`, `Float`, `Bool`, `List`, `Dict`."""

from __future__ import annotations

from typing import Any

from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register


class Constant(BaseNode):
    """Emits its `value` on `output`."""

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        return values.get("value")


def _constant(name: str, default: Any) -> type[Constant]:
    attrs = {"type_name": f"nodetool.constant.{name}", "inputs": {"value": default}}
    return register(type(name, (Constant,), attrs))


String = _constant("String", "")
Integer = _constant("Integer", 0)
Float = _constant("Float", 0.0)
Bool = _constant("Bool", False)
List = _constant("List", [])
Dict = _constant("Dict", {})
