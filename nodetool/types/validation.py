"""The one place a pydantic `ValidationError` becomes a field path and a readable message.

`first_problem` names the first error's field as JSON callers write it (`messages[0].content`):
list indices in brackets, and the tags pydantic puts in an error's location for discriminated
unions (`messages.0.user.content`) dropped by walking the model's core schema. Every layer
that reports bad input (the OpenAI envelope, `/chat` frames, tool arguments, settings, MCP
configuration) phrases its message from this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

_WRAPPERS = ("model", "nullable", "default", "function-after", "function-before", "function-wrap")


@dataclass(frozen=True, slots=True)
class Problem:
    """The first error: where (`param`, None for the whole value), what, and its pydantic kind."""

    param: str | None
    message: str
    kind: str
    input: Any
    path: tuple[str | int, ...]
    ctx: dict[str, Any] | None = None


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Step through references and wrappers to the schema that validates the value."""
    while True:
        kind = schema.get("type")
        if kind == "definitions":
            defs.update({d["ref"]: d for d in schema["definitions"] if "ref" in d})
            schema = schema["schema"]
        elif kind == "definition-ref":
            schema = defs.get(schema["schema_ref"], {})
        elif kind in _WRAPPERS:
            schema = schema["schema"]
        else:
            return schema


def _child(schema: dict[str, Any], part: str | int) -> dict[str, Any]:
    kind = schema.get("type")
    if kind == "model-fields":
        field = schema["fields"].get(part)
        return field["schema"] if field else {}
    if kind == "list" and isinstance(part, int):
        return schema.get("items_schema", {})
    if kind == "dict":
        return schema.get("values_schema", {})
    return {}


def _field_path(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """`loc` without discriminated-union tags (they are never field names of the JSON)."""
    if model is None:
        return loc
    defs: dict[str, Any] = {}
    schema = _resolve(model.__pydantic_core_schema__, defs)  # type: ignore[arg-type]
    path: list[str | int] = []
    for index, part in enumerate(loc):
        kind = schema.get("type")
        if kind == "tagged-union" and part in schema["choices"]:
            schema = _resolve(schema["choices"][part], defs)
            continue
        if kind == "union" and isinstance(part, str):
            # a member's label: continue in the member the rest of the location fits
            following = loc[index + 1] if index + 1 < len(loc) else None
            schema = _member(schema, following, defs)
            continue
        path.append(part)
        schema = _resolve(_child(schema, part), defs)
    return tuple(path)


def _member(union: dict[str, Any], following: str | int | None, defs: dict[str, Any]) -> dict:
    for choice in union.get("choices", ()):
        member = _resolve(choice[0] if isinstance(choice, tuple) else choice, defs)
        if following is None or _child(member, following) or member.get("type") == "tagged-union":
            return member
    return {}


def dotted(path: tuple[str | int, ...]) -> str | None:
    """`("messages", 0, "content")` as `messages[0].content`; None for the root."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def first_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> Problem:
    """The first error of `exc` (raised validating `model`, when given, to drop union tags)."""
    return problem_of(exc.errors(include_url=False), model)


def problem_of(
    errors: Sequence[Any], model: type[BaseModel] | None = None, skip: int = 0
) -> Problem:
    """The first of pydantic's error dicts (`skip`: leading location parts to leave out, as
    FastAPI's `body`/`query`)."""
    error = errors[0]
    if len(errors) > 1:  # a union reports every member's error: the deepest got furthest
        first = tuple(error.get("loc", ()))
        same = [e for e in errors if tuple(e.get("loc", ()))[: len(first) - 1] == first[:-1]]
        error = max(same, key=lambda e: len(e.get("loc", ())))
    path = _field_path(model, tuple(error.get("loc", ()))[skip:])
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return Problem(dotted(path), message, error["type"], error.get("input"), path, error.get("ctx"))
