"""`calculator`: arithmetic through a whitelisting AST walker (no eval/exec), with bounded sizes."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from nodetool.errors import ToolError
from nodetool.tools.base import Tool, ToolContext

MAX_EXPRESSION_CHARS = 1000
MAX_INT_BITS = 4096  # about 1233 decimal digits
MAX_EXPONENT = 10_000
MAX_NODES = 500

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(x: Number, ndigits: int | None = None) -> Number:
    if ndigits is not None and not isinstance(ndigits, int):
        raise ToolError("round() digits must be an integer")
    return round(x) if ndigits is None else round(x, ndigits)


_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (function, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, 50),
    "max": (max, 1, 50),
}


def _check(value: Any) -> Number:
    """Refuse results that are not real numbers or whose integer size is out of bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"number too large (over {MAX_INT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("numeric overflow" if math.isinf(value) else "result is not a number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent too large (limit {MAX_EXPONENT})")
    exact = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    # |base| >= 2**(bits-1), so the result has at least (bits-1)*exponent bits
    if exact and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
        raise ToolError(f"number too large (over {MAX_INT_BITS} bits)")
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError("result is a complex number")
    return result


class _Evaluator:
    """Evaluates a parsed expression; only the node types handled here are allowed."""

    def __init__(self) -> None:
        self.nodes = 0

    def eval(self, node: ast.AST) -> Number:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ToolError("expression is too complex")
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ToolError(f"unsupported literal: {node.value!r}")
            return _check(node.value)
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Pow):
                return _check(_power(left, right))
            op = _BINARY.get(type(node.op))
            if op is None:
                raise ToolError(f"unsupported operator: {type(node.op).__name__}")
            return _check(op(left, right))
        if isinstance(node, ast.UnaryOp):
            unary = _UNARY.get(type(node.op))
            if unary is None:
                raise ToolError(f"unsupported operator: {type(node.op).__name__}")
            return _check(unary(self.eval(node.operand)))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise ToolError(f"unknown name: {node.id}")
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ToolError(f"unsupported syntax: {type(node).__name__}")

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else "expression"
            raise ToolError(f"unknown function: {name}")
        if node.keywords:
            raise ToolError("keyword arguments are not supported")
        func, low, high = _FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            raise ToolError(f"{node.func.id}() takes {low}..{high} arguments")
        args = [self.eval(arg) for arg in node.args]
        return _check(func(*args))


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; ToolError with the reason when refused."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression is too long (limit {MAX_EXPRESSION_CHARS} characters)")
    text = expression.strip().replace("^", "**")
    if not text:
        raise ToolError("expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"invalid expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ToolError("expression is too deeply nested") from None
    try:
        return _Evaluator().eval(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("numeric overflow") from None
    except ValueError as exc:
        raise ToolError(f"math error: {exc}") from None
    except RecursionError:
        raise ToolError("expression is too deeply nested") from None


class CalculatorArgs(BaseModel):
    expression: str = Field(
        description="Arithmetic expression, e.g. '(2 + 3) * 4 ** 2' or 'sqrt(2) * pi'.",
    )


class CalculatorTool(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression: + - * / // % ** (or ^), parentheses, "
        "constants pi, e, tau and functions sqrt, sin, cos, tan, log, log10, exp, abs, "
        "round, floor, ceil, min, max."
    )
    Args = CalculatorArgs
    timeout = 5.0

    async def run(self, context: ToolContext, args: BaseModel) -> Number:
        assert isinstance(args, CalculatorArgs)
        return evaluate(args.expression)
