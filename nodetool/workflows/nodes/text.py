"""Text nodes: `nodetool.text.FormatText` (Jinja2, sandboxed), `Template`, `Concat`, `Join`.

They work on user text, so they run in the sandbox worker processes (`execution`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodetool.workflows.nodes.base import BaseNode
from nodetool.workflows.registry import register
from nodetool.workflows.templates import render, substitute

if TYPE_CHECKING:
    from nodetool.workflows.limits import WorkflowLimits


@register
class FormatText(BaseNode):
    """Jinja2 template over the node's dynamic properties: `Hello, {{ name }}!`."""

    type_name = "nodetool.text.FormatText"
    inputs = {"template": ""}
    required = ("template",)
    dynamic = True
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> str:
        variables = {k: v for k, v in values.items() if k != "template"}
        return render(str(values.get("template") or ""), variables, limits)


@register
class Template(BaseNode):
    """Replaces `{{ key }}` placeholders in `string` with values (a dict and dynamic inputs)."""

    type_name = "nodetool.text.Template"
    inputs = {"string": "", "values": {}}
    dynamic = True
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> str:
        mapping: dict[str, Any] = {}
        if isinstance(values.get("values"), dict):
            mapping.update(values["values"])
        mapping.update({k: v for k, v in values.items() if k not in ("string", "values")})
        return substitute(str(values.get("string") or ""), mapping)


@register
class Concat(BaseNode):
    type_name = "nodetool.text.Concat"
    inputs = {"a": "", "b": ""}

    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> str:
        return f"{values.get('a') or ''}{values.get('b') or ''}"


@register
class Join(BaseNode):
    type_name = "nodetool.text.Join"
    inputs = {"strings": [], "separator": ""}

    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> str:
        items = values.get("strings") or []
        return str(values.get("separator") or "").join(str(item) for item in items)


@register
class ToString(BaseNode):
    type_name = "nodetool.text.ToString"
    inputs = {"value": None}

    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> str:
        return str(values.get("value"))
