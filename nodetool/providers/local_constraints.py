"""Structured output on the embedded model: JSON Schema -> llama.cpp grammar-constrained decoding.

- `response_format` `json_object` / `json_schema`: the answer is constrained to the schema.
- `tool_choice` `required` or a named function (with `tools`): the answer is constrained to the
  function's parameters (or, for `required` with several tools, to `{"name", "arguments"}` of
  one of them) and comes back as a tool call with `finish_reason: "tool_calls"`.

llama.cpp turns the schema into a grammar, so the JSON is valid every time (unless `max_tokens`
cuts it). `tool_choice: "auto"` leaves the small model to answer in text: it cannot decide
reliably when to call a tool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nodetool.errors import InvalidRequestError
from nodetool.types.messages import ChatOptions, ToolSpec


@dataclass(frozen=True, slots=True)
class Constraint:
    """What to constrain: a JSON schema, and which tool call the JSON becomes (if any)."""

    schema: dict[str, Any]
    tool: str | None = None  # the named function; "*" when the JSON names it
    hint: str = ""  # a line for the prompt saying what is expected


def constraint_for(
    options: ChatOptions | None, tools: Sequence[ToolSpec] | None
) -> Constraint | None:
    """The constraint a request asks for, or None for free text."""
    if options is None:
        return None
    choice = options.tool_choice
    if tools and choice not in (None, "auto", "none"):
        return _tool_constraint(choice, tools)
    return _format_constraint(options.response_format)


def _format_constraint(response_format: dict[str, Any] | None) -> Constraint | None:
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return Constraint({"type": "object"}, hint="The Assistant answers in JSON.")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}  # type: ignore[union-attr]
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be a JSON Schema object",
                param="response_format",
            )
        return Constraint(schema, hint="The Assistant answers in JSON.")
    raise InvalidRequestError(f"unsupported response_format type {kind!r}", param="response_format")


def _tool_constraint(choice: Any, tools: Sequence[ToolSpec]) -> Constraint:
    by_name = {tool.name: tool for tool in tools}
    if choice == "required":
        if len(tools) == 1:
            return _named(tools[0])
        options = [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
            }
            for t in tools
        ]
        names = ", ".join(by_name)
        return Constraint({"anyOf": options}, "*", f"The Assistant calls one of: {names}.")
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str) or name not in by_name:
        raise InvalidRequestError(
            f"tool_choice names no tool of this request: {json.dumps(choice)[:200]}",
            param="tool_choice",
        )
    return _named(by_name[name])


def _named(tool: ToolSpec) -> Constraint:
    about = f" ({tool.description})" if tool.description else ""
    hint = f"The Assistant calls the function {tool.name}{about} with JSON arguments."
    return Constraint(tool.parameters or {"type": "object"}, tool.name, hint)


def tool_call_of(constraint: Constraint, text: str) -> tuple[str, str]:
    """(function name, arguments JSON) of a constrained answer."""
    if constraint.tool != "*":
        return constraint.tool or "", text.strip() or "{}"
    try:
        value = json.loads(text)
        return str(value["name"]), json.dumps(value["arguments"])
    except (ValueError, KeyError, TypeError):
        return "", text.strip()
