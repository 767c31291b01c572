"""Text nodes: `nodetool.text.FormatText` (Jinja2, sandboxed), `Template`, `Concat`, `Join`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=False)


@lru_cache(maxsize=256)
def _compile(source: str) -> tuple[Any, frozenset[str]]:
    """The compiled template and the variable names it reads (cached per source text)."""
    from jinja2 import meta

    env = _environment()
    names = frozenset(meta.find_undeclared_variables(env.parse(source)))
    return env.from_string(source), names


def render(source: str, variables: dict[str, Any]) -> str:
    """Render a Jinja2 template; variable names match case-insensitively, as in NodeTool."""
    from jinja2 import TemplateError

    try:
        template, names = _compile(source)
        context = dict(variables)
        missing = [name for name in names if name not in context]
        if missing:
            lowered = {key.lower(): value for key, value in variables.items()}
            for name in missing:
                if name.lower() in lowered:
                    context[name] = lowered[name.lower()]
        return template.render(context)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from None


@register
class FormatText(BaseNode):
    """Jinja2 template over the node's dynamic properties: `Hello, {{ name }}!`."""

    type_name = "nodetool.text.FormatText"
    inputs = {"template": ""}
    required = ("template",)
    dynamic = True

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> str:
        variables = {k: v for k, v in values.items() if k != "template"}
        return render(str(values.get("template") or ""), variables)


_PLACEHOLDER = re.compile(r"{{\s*([^{}]+?)\s*}}")


@register
class Template(BaseNode):
    """Replaces `{{ key }}` placeholders in `string` with values (a dict and dynamic inputs)."""

    type_name = "nodetool.text.Template"
    inputs = {"string": "", "values": {}}
    dynamic = True

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> str:
        mapping: dict[str, Any] = {}
        if isinstance(values.get("values"), dict):
            mapping.update(values["values"])
        mapping.update({k: v for k, v in values.items() if k not in ("string", "values")})

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1)
            return str(mapping[key]) if key in mapping else match.group(0)

        return _PLACEHOLDER.sub(substitute, str(values.get("string") or ""))


@register
class Concat(BaseNode):
    type_name = "nodetool.text.Concat"
    inputs = {"a": "", "b": ""}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> str:
        return f"{values.get('a') or ''}{values.get('b') or ''}"


@register
class Join(BaseNode):
    type_name = "nodetool.text.Join"
    inputs = {"strings": [], "separator": ""}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> str:
        items = values.get("strings") or []
        return str(values.get("separator") or "").join(str(item) for item in items)


@register
class ToString(BaseNode):
    type_name = "nodetool.text.ToString"
    inputs = {"value": None}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> str:
        return str(values.get("value"))
