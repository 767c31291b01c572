"""Workflow inputs (`nodetool.input.*`), outputs (`nodetool.output.*`), Preview and Comment.

Inputs are keyed by `data.name` and default to `data.value`; a param replaces the value after
`coerce` checked it (min/max in the JSON are editor hints, as in NodeTool). Each input class is
the one description of its param: `json_type` (the worker's listing), `param_schema` (tool
arguments, with min/max as bounds), `coerce`, and `chat_text` (whether a chat user's text
feeds it). Outputs are keyed by
`data.name` and become the run's results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}


class InputNode(BaseNode):
    """A workflow input: emits its param (or its `value`) on `output`."""

    role = "input"
    inputs: ClassVar[dict[str, Any]] = {"name": "", "value": None, "description": ""}
    json_type: ClassVar[str] = "any"
    # a `/chat` workflow turn feeds the user's text to the input of the lowest rank (0: never)
    chat_text: ClassVar[int] = 0

    @classmethod
    def coerce(cls, value: Any) -> Any:
        """The param value as this input's type; ValueError says what was expected."""
        return value

    @classmethod
    def param_schema(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON schema of this input's param (a workflow tool's argument)."""
        return {} if cls.json_type == "any" else {"type": cls.json_type}

    @classmethod
    def param_default(cls, data: Mapping[str, Any]) -> Any:
        """The value the input has when no param is given (None or "": none)."""
        return data.get("value", cls.inputs.get("value"))

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        return values.get("value")


@register
class StringInput(InputNode):
    type_name = "nodetool.input.StringInput"
    aliases = ("nodetool.input.TextInput",)
    inputs = {**InputNode.inputs, "value": ""}
    json_type = "string"
    chat_text = 2

    @classmethod
    def coerce(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {_show(value)}")


class NumberInput(InputNode):
    """An integer or float input: its `min`/`max` bound a tool's argument."""

    @classmethod
    def param_schema(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        schema = super().param_schema(data)
        for key, word in (("min", "minimum"), ("max", "maximum")):
            bound = data.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                schema[word] = bound
        return schema


@register
class IntegerInput(NumberInput):
    type_name = "nodetool.input.IntegerInput"
    inputs = {**InputNode.inputs, "value": 0}
    json_type = "integer"

    @classmethod
    def coerce(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {_show(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {_show(value)}")


@register
class FloatInput(NumberInput):
    type_name = "nodetool.input.FloatInput"
    inputs = {**InputNode.inputs, "value": 0.0}
    json_type = "number"

    @classmethod
    def coerce(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {_show(value)}")


@register
class BooleanInput(InputNode):
    type_name = "nodetool.input.BooleanInput"
    inputs = {**InputNode.inputs, "value": False}
    json_type = "boolean"

    @classmethod
    def coerce(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {_show(value)}")


@register
class MessageInput(InputNode):
    """A chat message input: text becomes `{type: message, role: user, content}`."""

    type_name = "nodetool.input.MessageInput"
    aliases = ("nodetool.input.ChatInput",)
    inputs = {**InputNode.inputs, "value": {"type": "message", "role": "user", "content": ""}}
    json_type = "object"
    chat_text = 1

    @classmethod
    def param_schema(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "string"}  # a model gives the message's text

    @classmethod
    def param_default(cls, data: Mapping[str, Any]) -> Any:
        value = super().param_default(data)
        return value.get("content") if isinstance(value, dict) else value

    @classmethod
    def coerce(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": "message", "role": "user", "content": value}
        if isinstance(value, dict) and "content" in value:
            return {"type": "message", "role": "user", **value}
        raise ValueError(f"expected a message (text or {{role, content}}), got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- outputs ---------------------------------------------------------------------------


class OutputNode(BaseNode):
    """A workflow output: its value becomes `results[name]` and an `output_update`."""

    role = "output"
    inputs: ClassVar[dict[str, Any]] = {"name": "", "value": None, "description": ""}
    required = ("value",)

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        value = values.get("value")
        await ctx.storable(value, f"output '{self.spec.name}'")
        ctx.set_result(self.spec.name, value)
        return value


def _output(type_name: str) -> type[OutputNode]:
    cls = type(type_name.rsplit(".", 1)[1], (OutputNode,), {"type_name": type_name})
    return register(cls)


Output = _output("nodetool.output.Output")
StringOutput = _output("nodetool.output.StringOutput")
TextOutput = _output("nodetool.output.TextOutput")
IntegerOutput = _output("nodetool.output.IntegerOutput")
FloatOutput = _output("nodetool.output.FloatOutput")
BooleanOutput = _output("nodetool.output.BooleanOutput")
ListOutput = _output("nodetool.output.ListOutput")
DictionaryOutput = _output("nodetool.output.DictionaryOutput")
ImageOutput = _output("nodetool.output.ImageOutput")


# ---- editor-only nodes ----------------------------------------------------------------------


@register
class Preview(BaseNode):
    """Shows each value it receives as an `output_update` named after the node."""

    type_name = "nodetool.workflows.base_node.Preview"
    inputs = {"value": None, "name": ""}
    outputs = ()
    required = ("value",)

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        await ctx.storable(values.get("value"), f"preview '{self.spec.name}'")
        ctx.output_update(self.spec.name, values.get("value"))


@register
class Comment(BaseNode):
    """An annotation on the canvas; never runs."""

    type_name = "nodetool.workflows.base_node.Comment"
    inputs = {"comment": None}
    outputs = ()
    runnable = False
