"""Basic `nodetool.math` nodes: Add, Subtract, Multiply, Divide, Modulus, Power, Sqrt, ...

Integers are unbounded in Python, so every math node runs in a sandbox worker process, and
`Power` refuses results over `max_power_bits` bits before computing them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from nodetool.workflows.limits import WorkflowLimits, check_power
from nodetool.workflows.nodes.base import BaseNode
from nodetool.workflows.registry import register


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    raise ValueError(f"input '{name}' must be a number, got {value!r}")


class BinaryOp(BaseNode):
    """`a <op> b` on numbers."""

    inputs = {"a": 0.0, "b": 0.0}
    op: Callable[[Any, Any], Any] = operator.add
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> int | float:
        a, b = _number(values.get("a"), "a"), _number(values.get("b"), "b")
        try:
            return type(self).op(a, b)
        except ZeroDivisionError:
            raise ValueError("division by zero") from None


def _binary(name: str, op: Callable[[Any, Any], Any]) -> type[BinaryOp]:
    attrs = {"type_name": f"nodetool.math.{name}", "op": staticmethod(op)}
    return register(type(name, (BinaryOp,), attrs))


Add = _binary("Add", operator.add)
Subtract = _binary("Subtract", operator.sub)
Multiply = _binary("Multiply", operator.mul)
Divide = _binary("Divide", operator.truediv)
Modulus = _binary("Modulus", operator.mod)


@register
class Power(BaseNode):
    type_name = "nodetool.math.Power"
    inputs = {"base": 1.0, "exponent": 2.0}
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> int | float:
        base, exponent = (
            _number(values.get("base"), "base"),
            _number(values.get("exponent"), "exponent"),
        )
        check_power(base, exponent, limits)
        try:
            result = base**exponent
        except OverflowError:
            raise ValueError(f"{base}**{exponent} is too large for a float") from None
        if isinstance(result, complex):
            raise ValueError("power has no real result")
        return result


class UnaryOp(BaseNode):
    inputs = {"x": 0.0}
    fn: Callable[[float], float] = math.sqrt
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> float:
        try:
            return type(self).fn(_number(values.get("x"), "x"))
        except ValueError:
            name = self.type_name.rsplit(".", 1)[1]
            raise ValueError(f"{name} of {values.get('x')!r} is undefined") from None


def _unary(name: str, fn: Callable[[float], float]) -> type[UnaryOp]:
    attrs = {"type_name": f"nodetool.math.{name}", "fn": staticmethod(fn)}
    return register(type(name, (UnaryOp,), attrs))


Sqrt = _unary("Sqrt", math.sqrt)
Sine = _unary("Sine", math.sin)
Cosine = _unary("Cosine", math.cos)
Absolute = _unary("Absolute", abs)
Round = _unary("Round", round)
