"""The tool registry: the server's allow-list, selection by name, and safe execution.

The enabled set (`--tools`, env NODETOOL_TOOLS) is an allow-list for the tools the server runs
itself: a request naming a server tool outside it is refused with an error naming the tool.
`--tools` names are also offered to the model when a request names no tools. Without
`--tools`, `serve` enables (allows, without offering) the offline built-ins (every built-in
but `http_get`) and the user's workflow tools (`workflow_*`); worker and chat-server enable
none. An entry ending
in `*` enables a family of dynamic tools by prefix (`workflow_*`, `mcp__server__*`). Tools a
client defines and runs itself (OpenAI function tools, the `/chat` manifest) are not affected.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from nodetool.errors import InvalidRequestError, ToolError
from nodetool.tools.base import Tool, ToolContext, ToolFamily, ToolOutcome
from nodetool.types.messages import ToolCall
from nodetool.types.validation import first_problem

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.tools.mcp_tools import McpHub

log = logging.getLogger("nodetool.tools")

WORKFLOW_PREFIX = "workflow_"
MCP_PREFIX = "mcp__"
NETWORK_TOOLS = frozenset({"http_get"})  # built-ins that reach the network
DEFAULT_DYNAMIC = {"serve": (WORKFLOW_PREFIX + "*",)}


class ToolRegistry:
    """Static tools by name, dynamic tool families by prefix (`workflow_<tool_name>` from
    stored workflows, given as `workflows`; `mcp__<server>__<tool>` of the configured MCP
    servers), and the allow-list of what this server may run."""

    def __init__(
        self,
        enabled: Iterable[str] | None = None,
        mcp: McpHub | None = None,
        offered: Iterable[str] | None = None,
        workflows: ToolFamily | None = None,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self.mcp = mcp
        self.workflows = workflows
        self.dynamic_prefixes: set[str] = {WORKFLOW_PREFIX} | ({MCP_PREFIX} if mcp else set())
        self.enabled: tuple[str, ...] = tuple(enabled or ())
        # offered when a request names no tools: `--tools` names (the kind's default: none)
        self.offered: tuple[str, ...] = tuple(offered or ())

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def is_known(self, name: str) -> bool:
        if name in self._tools or name.startswith(WORKFLOW_PREFIX):
            return True
        return self.mcp is not None and self.mcp.knows(name)

    def allows(self, name: str) -> bool:
        """Whether the allow-list admits `name` (exactly, or through a `prefix*` entry)."""
        for entry in self.enabled:
            if entry == name or (entry.endswith("*") and name.startswith(entry[:-1])):
                return True
        return False

    def default_names(self) -> list[str]:
        """The tools offered when a request names none: the exact `--tools` names."""
        return [entry for entry in self.offered if not entry.endswith("*")]

    def check_enabled(self, entries: Iterable[str]) -> None:
        """Every `--tools` entry names a known tool or a `prefix*` of a known family."""
        bad = []
        for entry in entries:
            prefix = entry[:-1] if entry.endswith("*") else None
            if prefix is not None:
                if not any(
                    p.startswith(prefix) or prefix.startswith(p) for p in self.dynamic_prefixes
                ):
                    bad.append(entry)
            elif not self.is_known(entry):
                bad.append(entry)
        if bad:
            raise InvalidRequestError(
                f"unknown tool(s): {', '.join(bad)}; available: {', '.join(self.names())}",
                param="tools",
                code="unknown_tool",
            )

    def validate_names(self, names: Iterable[str]) -> list[str]:
        """Names the server may run; a 400 naming any unknown or not enabled tool."""
        names = list(names)
        unknown = [n for n in names if not self.is_known(n)]
        if unknown:
            raise InvalidRequestError(
                f"unknown tool(s): {', '.join(unknown)}; available: {', '.join(self.names())}",
                param="tools",
                code="unknown_tool",
            )
        refused = [n for n in names if not self.allows(n)]
        if refused:
            enabled = ", ".join(self.enabled) or "none"
            raise InvalidRequestError(
                f"tool(s) not enabled on this server: {', '.join(refused)} (enabled: {enabled}; "
                "the operator enables server tools with --tools)",
                param="tools",
                code="tool_not_enabled",
            )
        return names

    async def resolve(self, names: Iterable[str], context: ToolContext) -> list[Tool]:
        """The Tool objects for `names`; workflow tools are looked up for the context's user."""
        tools: list[Tool] = []
        for name in self.validate_names(names):
            tool = self._tools.get(name)
            if tool is None and self.mcp is not None and self.mcp.knows(name):
                tool = await self.mcp.tool(name)
            if tool is None:
                tool = await self._workflow_tool(name, context)
            tools.append(tool)
        return tools

    async def _workflow_tool(self, name: str, context: ToolContext) -> Tool:
        tool = None if self.workflows is None else await self.workflows.find(name, context)
        if tool is None:
            raise InvalidRequestError(
                f"unknown tool: {name} (no stored workflow has that tool_name)",
                param="tools",
                code="unknown_tool",
            )
        return tool

    async def execute(
        self,
        call: ToolCall,
        args: dict[str, Any] | None,
        context: ToolContext,
        tools: dict[str, Tool] | None = None,
    ) -> ToolOutcome:
        """Run one call; never raises — unknown tools, bad arguments, failures, timeouts
        become error outcomes the model sees."""
        tool = self._tools.get(call.name) if tools is None else tools.get(call.name)
        if tool is None:
            return ToolOutcome(ok=False, error=f"unknown tool: {call.name}")
        if args is None:
            return ToolOutcome(ok=False, error="arguments are not a valid JSON object")
        try:
            parsed = tool.Args.model_validate(args)
        except ValidationError as exc:
            problem = first_problem(exc, tool.Args)
            where = problem.param or "arguments"
            return ToolOutcome(ok=False, error=f"invalid arguments: {where}: {problem.message}")
        try:
            result = await asyncio.wait_for(tool.run(context, parsed), timeout=tool.timeout)
        except TimeoutError:
            return ToolOutcome(ok=False, error=f"{call.name} timed out after {tool.timeout:g} s")
        except ToolError as exc:
            return ToolOutcome(ok=False, error=exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool failure must never abort the turn
            log.warning("tool %s failed: %s", call.name, exc)
            return ToolOutcome(ok=False, error=public_error(exc))
        from nodetool.tools.results import json_safe

        return ToolOutcome(ok=True, result=json_safe(result, context))

    async def aclose(self) -> None:
        """Stop the MCP servers this registry started."""
        if self.mcp is not None:
            await self.mcp.aclose()


_ABS_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"():,;]+)+/?|[A-Za-z]:\\[^\s'\"]+")


def public_error(exc: BaseException) -> str:
    """A tool failure as the model (and the client) see it: no absolute server paths."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {_ABS_PATH.sub('<path>', str(exc))}"


def default_enabled(kind: str, tools: Iterable[Tool]) -> list[str]:
    """The allow-list without `--tools`: offline built-ins on `serve`, none elsewhere."""
    if kind != "serve":
        return []
    offline = [tool.name for tool in tools if tool.name not in NETWORK_TOOLS]
    return offline + list(DEFAULT_DYNAMIC.get(kind, ()))


def build_tool_registry(
    settings: Settings, workflows: ToolFamily | None = None, kind: str = "serve"
) -> ToolRegistry:
    """A registry with every built-in tool, the configured MCP servers' tools (started
    lazily) and the `workflows` family; the allow-list is `--tools` or the kind's default."""
    from nodetool.tools.builtins import builtin_tools
    from nodetool.tools.mcp_tools import McpHub

    tools = builtin_tools()
    enabled = settings.tools if settings.tools is not None else default_enabled(kind, tools)
    registry = ToolRegistry(
        enabled, McpHub.from_settings(settings), offered=settings.tools, workflows=workflows
    )
    for tool in tools:
        registry.register(tool)
    registry.check_enabled(registry.enabled)
    return registry
