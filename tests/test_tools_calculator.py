"""calculator: arithmetic through the AST walker, and every refusal."""

from __future__ import annotations

import math

import pytest

from nodetool.config import Settings
from nodetool.errors import ToolError
from nodetool.tools.base import ToolContext
from nodetool.tools.builtins import builtin_tools
from nodetool.tools.calculator import MAX_INT_BITS, evaluate
from nodetool.tools.registry import ToolRegistry
from nodetool.types.messages import FunctionCall, ToolCall


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ^ 10", 1024),
        ("-(3)", -3),
        ("+4", 4),
        ("2 ** -1", 0.5),
        ("sqrt(16)", 4.0),
        ("abs(-2.5)", 2.5),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("floor(2.7) + ceil(2.1)", 5),
        ("10 ** 300", 10**300),
    ],
)
def test_evaluates(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


def test_constants_and_trigonometry() -> None:
    assert evaluate("pi") == math.pi
    assert evaluate("sin(pi / 2)") == pytest.approx(1.0)
    assert evaluate("cos(0)") == 1.0


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("2 ** 100000", "exponent too large"),
        ("10 ** 5000", "number too large"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("(2 ** 4000) * (2 ** 4000)", "number too large"),
        ("(" + "9" * 700 + ") ** 2", "number too large"),
        ("10.0 ** 400", "numeric overflow"),
        ("exp(1000)", "numeric overflow"),
        ("1e400", "numeric overflow"),
        ("(-8) ** 0.5", "complex"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("__import__('os').system('true')", "unknown function"),
        ("().__class__", "unsupported syntax"),
        ("open('x')", "unknown function"),
        ("x + 1", "unknown name: x"),
        ("'a' * 3", "unsupported literal"),
        ("True + 1", "unsupported literal"),
        ("1 << 100", "unsupported operator"),
        ("1 < 2", "unsupported syntax"),
        ("[1, 2]", "unsupported syntax"),
        ("lambda: 1", "unsupported syntax"),
        ("round(2.5, ndigits=1)", "keyword arguments"),
        ("sqrt(1, 2)", "takes 1..1 arguments"),
        ("1 +", "invalid expression"),
        ("", "expression is empty"),
        ("1+" * 600 + "1", "too long"),
        ("-" * 900 + "1", "too complex"),
        ("(" * 300 + "1" + ")" * 300, "invalid expression"),
    ],
)
def test_refuses(expression: str, reason: str) -> None:
    with pytest.raises(ToolError) as info:
        evaluate(expression)
    assert reason in info.value.message


def test_int_size_bound_is_bits() -> None:
    assert evaluate(f"2 ** {MAX_INT_BITS - 1}") == 2 ** (MAX_INT_BITS - 1)
    with pytest.raises(ToolError):
        evaluate(f"2 ** {MAX_INT_BITS}")


def _call(expression: object) -> tuple[ToolCall, dict]:
    args = {"expression": expression}
    return ToolCall(id="c1", function=FunctionCall(name="calculator", arguments="{}")), args


async def test_through_the_registry(tmp_path) -> None:
    registry = ToolRegistry(["*"])
    for tool in builtin_tools():
        registry.register(tool)
    context = ToolContext(user_id="1", settings=Settings(data_dir=tmp_path))
    outcome = await registry.execute(*_call("6 * 7"), context)
    assert outcome.ok and outcome.result == 42 and outcome.content() == "42"
    refused = await registry.execute(*_call("2 ** 100000"), context)
    assert not refused.ok and "exponent too large" in (refused.error or "")
    assert '"ok": false' in refused.content()
    missing = await registry.execute(_call("1")[0], {}, context)
    assert not missing.ok and "expression" in (missing.error or "")
