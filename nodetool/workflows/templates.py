"""Text templating for the text nodes: a capped Jinja2 sandbox and `{{ key }}` placeholders.

Both run inside a sandbox worker process (see `sandbox.py`), so CPU time and memory are
bounded there; the caps here turn the common blow-ups into clear errors instead: `range`
longer than `max_range`, `**` with a result over `max_power_bits` bits, and `text * n`
over the node output size. Placeholder substitution is a linear scan (no backtracking).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from nodetool.workflows.limits import LimitExceeded, WorkflowLimits, check_power, check_repeat


@lru_cache(maxsize=4)
def environment(limits: WorkflowLimits) -> Any:
    """A sandboxed Jinja2 environment holding to `limits` (one per distinct limits value)."""
    from jinja2.sandbox import SandboxedEnvironment

    class _Capped(SandboxedEnvironment):
        intercepted_binops = frozenset({"**", "*"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                check_power(left, right, limits)
                return left**right
            check_repeat(left, right, limits)
            return left * right

    def capped_range(*args: int) -> range:
        span = range(*args)
        if len(span) > limits.max_range:
            raise LimitExceeded(f"range of {len(span)} items", "max_range", limits.max_range)
        return span

    env = _Capped(autoescape=False)
    env.globals["range"] = capped_range
    return env


@lru_cache(maxsize=256)
def _compile(limits: WorkflowLimits, source: str) -> tuple[Any, frozenset[str]]:
    """The compiled template and the variable names it reads (cached per source text)."""
    from jinja2 import meta

    env = environment(limits)
    names = frozenset(meta.find_undeclared_variables(env.parse(source)))
    return env.from_string(source), names


def render(source: str, variables: dict[str, Any], limits: WorkflowLimits) -> str:
    """Render a Jinja2 template; variable names match case-insensitively, as in NodeTool."""
    from jinja2 import TemplateError

    try:
        template, names = _compile(limits, source)
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


def substitute(text: str, mapping: dict[str, Any]) -> str:
    """Replace `{{ key }}` with `str(mapping[key])`; unknown keys and braces inside stay as is.

    A key is what lies between `{{` and the next `}}`, stripped, holding no brace. The scan
    moves forward only, so it is linear in the length of `text`.
    """
    out: list[str] = []
    done = 0  # text[:done] is copied to `out`
    start = text.find("{{")
    while start != -1:
        end = text.find("}}", start + 2)
        if end == -1:
            break
        brace = max(text.rfind("{", start + 2, end), text.rfind("}", start + 2, end))
        if brace != -1:  # no key starts here: retry from the "{{" that may end at the brace
            start = text.find("{{", brace - 1)
            continue
        key = text[start + 2 : end].strip()
        if key and key in mapping:
            out.append(text[done:start])
            out.append(str(mapping[key]))
            done = end + 2
        start = text.find("{{", end + 2)
    out.append(text[done:])
    return "".join(out)
