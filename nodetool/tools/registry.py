"""The tool registry: selection by name, spec generation, and safe execution."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from nodetool.errors import InvalidRequestError, ToolError
from nodetool.tools.base import Tool, ToolContext, ToolOutcome
from nodetool.types.messages import ToolCall

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.storage.base import Store
    from nodetool.tools.mcp_tools import McpHub

log = logging.getLogger("nodetool.tools")


class ToolRegistry:
    """Static tools by name, plus dynamic `workflow_<tool_name>` tools from stored workflows
    and `mcp__<server>__<tool>` tools of the configured MCP servers (`mcp`)."""

    def __init__(self, mcp: McpHub | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self.mcp = mcp

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def validate_names(self, names: Iterable[str]) -> list[str]:
        """Names that are static, workflow or configured MCP tools; otherwise a 400 naming the
        unknown."""
        names = list(names)
        unknown = [n for n in names if not self._known(n)]
        if unknown:
            raise InvalidRequestError(
                f"unknown tool(s): {', '.join(unknown)}; available: {', '.join(self.names())}",
                param="tools",
                code="unknown_tool",
            )
        return names

    def _known(self, name: str) -> bool:
        if name in self._tools or name.startswith("workflow_"):
            return True
        return self.mcp is not None and self.mcp.knows(name)

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
        from nodetool.tools.workflow_tools import find_workflow_tool

        tool = await find_workflow_tool(name, context)
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
        tool = (tools or {}).get(call.name) or self._tools.get(call.name)
        if tool is None:
            return ToolOutcome(ok=False, error=f"unknown tool: {call.name}")
        if args is None:
            return ToolOutcome(ok=False, error="arguments are not a valid JSON object")
        try:
            parsed = tool.Args.model_validate(args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "arguments"
            return ToolOutcome(ok=False, error=f"invalid arguments: {where}: {first['msg']}")
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
            return ToolOutcome(ok=False, error=f"{type(exc).__name__}: {exc}")
        from nodetool.tools.results import json_safe

        return ToolOutcome(ok=True, result=json_safe(result, context))

    async def aclose(self) -> None:
        """Stop the MCP servers this registry started."""
        if self.mcp is not None:
            await self.mcp.aclose()


def build_tool_registry(settings: Settings, store: Store | None) -> ToolRegistry:
    """A registry with every built-in tool and the configured MCP servers' tools (started
    lazily); servers enable a subset with `--tools`."""
    from nodetool.tools.builtins import builtin_tools
    from nodetool.tools.mcp_tools import McpHub

    registry = ToolRegistry(McpHub.from_settings(settings))
    for tool in builtin_tools():
        registry.register(tool)
    registry.validate_names(settings.tools)
    return registry
