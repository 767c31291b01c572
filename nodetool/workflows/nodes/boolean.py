"""Boolean nodes: `nodetool.boolean.Compare`, `ConditionalSwitch`, `LogicalOperator`, `Not`."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}

_LOGIC: dict[str, Callable[[bool, bool], bool]] = {
    "and": lambda a, b: a and b,
    "or": lambda a, b: a or b,
    "xor": lambda a, b: a != b,
    "nand": lambda a, b: not (a and b),
    "nor": lambda a, b: not (a or b),
}


@register
class Compare(BaseNode):
    """`a <comparison> b` with ==, !=, >, <, >=, <=."""

    type_name = "nodetool.boolean.Compare"
    inputs = {"a": 0, "b": 0, "comparison": "=="}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> bool:
        op = _COMPARISONS.get(str(values.get("comparison")))
        if op is None:
            raise ValueError(
                f"unknown comparison {values.get('comparison')!r}; use one of "
                + ", ".join(_COMPARISONS)
            )
        try:
            return bool(op(values.get("a"), values.get("b")))
        except TypeError:
            raise ValueError(
                f"cannot compare {values.get('a')!r} {values.get('comparison')} {values.get('b')!r}"
            ) from None


@register
class ConditionalSwitch(BaseNode):
    """`if_true` when `condition` holds, else `if_false`."""

    type_name = "nodetool.boolean.ConditionalSwitch"
    inputs = {"condition": False, "if_true": None, "if_false": None}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        return values.get("if_true") if values.get("condition") else values.get("if_false")


@register
class LogicalOperator(BaseNode):
    """`a <operation> b` with and, or, xor, nand, nor."""

    type_name = "nodetool.boolean.LogicalOperator"
    inputs = {"a": False, "b": False, "operation": "and"}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> bool:
        op = _LOGIC.get(str(values.get("operation")).lower())
        if op is None:
            raise ValueError(
                f"unknown operation {values.get('operation')!r}; use one of " + ", ".join(_LOGIC)
            )
        return op(bool(values.get("a")), bool(values.get("b")))


@register
class Not(BaseNode):
    type_name = "nodetool.boolean.Not"
    inputs = {"value": False}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> bool:
        return not values.get("value")
