"""The MCP server: the enabled tools and every workflow the user can see, as MCP tools.

One `mcp` SDK low-level `Server` built from a `Runtime`; `nodetool mcp` runs it over stdio,
`serve` and `worker` mount it over Streamable HTTP at `/mcp` (`mcp_http.py`). Tools keep
their names and JSON schemas; a workflow's input schema comes from its input nodes and its
result is its outputs. Every failure is a tool result with `isError`, never a dead server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nodetool import __version__
from nodetool.api.request_user import user_id_of
from nodetool.config import DEFAULT_USER
from nodetool.errors import NodetoolError
from nodetool.tools.base import Tool, ToolContext
from nodetool.types.messages import FunctionCall, ToolCall

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.types import CallToolRequestParams, CallToolResult, ListToolsResult

    from nodetool.config import Settings
    from nodetool.runtime import Runtime

log = logging.getLogger("nodetool.mcp")

UserOf = Callable[["ServerRequestContext[Any, Any]"], str]
INSTRUCTIONS = (
    "NodeTool's tools and workflows. A workflow tool runs the workflow with its inputs as "
    "arguments and returns its outputs."
)


def stdio_user(ctx: ServerRequestContext[Any, Any]) -> str:
    """stdio has one local user."""
    return DEFAULT_USER


def http_user(ctx: ServerRequestContext[Any, Any]) -> str:
    """The user the auth middleware authenticated for this HTTP request."""
    request = ctx.request
    scope = getattr(request, "scope", None) or {}
    return user_id_of(scope)


class McpSurface:
    """What one runtime offers over MCP, per user."""

    def __init__(self, runtime: Runtime, names: list[str]) -> None:
        self.runtime = runtime
        self.names = names

    def context(self, user_id: str) -> ToolContext:
        runtime = self.runtime
        return ToolContext(user_id=user_id, settings=runtime.settings, store=runtime.store)

    async def tools(self, user_id: str) -> dict[str, Tool]:
        """The enabled tools (a name that cannot be resolved is logged and left out), then
        every workflow the user can see."""
        from nodetool.workflows.as_tool import WorkflowTools

        registry = self.runtime.tools
        assert registry is not None
        context = self.context(user_id)
        tools: dict[str, Tool] = {}
        for name in self.names:
            try:
                (tool,) = await registry.resolve([name], context)
            except NodetoolError as exc:
                log.warning("MCP: tool %s is not offered: %s", name, exc.message)
                continue
            tools.setdefault(tool.name, tool)
        for tool in await WorkflowTools(self.runtime.jobs).every(context):
            tools.setdefault(tool.name, tool)
        return tools

    async def list_tools(self, user_id: str) -> ListToolsResult:
        from mcp.types import ListToolsResult
        from mcp.types import Tool as McpTool

        tools = await self.tools(user_id)
        return ListToolsResult(
            tools=[
                McpTool(name=t.name, description=t.description, input_schema=t.parameters())
                for t in tools.values()
            ]
        )

    async def call_tool(
        self, user_id: str, name: str, arguments: dict[str, Any] | None
    ) -> CallToolResult:
        from mcp.types import CallToolResult, TextContent

        def error(message: str) -> CallToolResult:
            return CallToolResult(content=[TextContent(text=message)], is_error=True)

        registry = self.runtime.tools
        assert registry is not None
        try:
            tools = await self.tools(user_id)
        except NodetoolError as exc:
            return error(exc.message)
        if name not in tools:
            return error(f"unknown tool: {name}; available: {', '.join(tools) or 'none'}")
        call = ToolCall(
            id="mcp", function=FunctionCall(name=name, arguments=json.dumps(arguments or {}))
        )
        outcome = await registry.execute(call, arguments or {}, self.context(user_id), tools)
        if not outcome.ok:
            return error(outcome.error or "the tool failed")
        structured = outcome.result if isinstance(outcome.result, dict) else None
        return CallToolResult(
            content=[TextContent(text=outcome.content())], structured_content=structured
        )


def build_mcp_server(runtime: Runtime, names: list[str], user_of: UserOf) -> Server[Any]:
    """A low-level MCP `Server` offering `names` (tool names) and the user's workflows."""
    from mcp.server.lowlevel import Server

    surface = McpSurface(runtime, names)

    async def on_list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> ListToolsResult:
        return await surface.list_tools(user_of(ctx))

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        return await surface.call_tool(user_of(ctx), params.name, params.arguments)

    return Server(
        "nodetool",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


async def serve_stdio(settings: Settings, names: list[str]) -> None:
    """Run the MCP server over stdin/stdout until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    from nodetool.runtime import open_runtime

    runtime = await open_runtime(settings, store=True, jobs=True)
    try:
        server = build_mcp_server(runtime, names, stdio_user)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await runtime.aclose()
