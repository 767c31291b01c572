"""MCP servers' tools as ordinary tools named `mcp__<server>__<tool>`.

`McpHub` holds one `McpConnection` per configured server (started lazily, once per process)
and turns names into `McpTool`s for the tool registry; the allow-list (`--tools`, `/chat`
`tools`) applies to them like to any other tool.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from nodetool.errors import InvalidRequestError, ToolError
from nodetool.tools.base import Tool, ToolContext
from nodetool.tools.mcp_client import McpConnection, McpStartError
from nodetool.tools.mcp_config import (
    McpServerSpec,
    load_mcp_config,
    schema_of,
    server_of,
    tool_name,
)

if TYPE_CHECKING:
    from mcp.types import CallToolResult
    from mcp.types import Tool as McpToolInfo

    from nodetool.config import Settings


class FreeArgs(BaseModel):
    """Any JSON object: the MCP server validates its own arguments."""

    model_config = ConfigDict(extra="allow")


class McpTool(Tool):
    """One tool of one MCP server."""

    Args = FreeArgs

    def __init__(self, connection: McpConnection, info: McpToolInfo) -> None:
        self.connection = connection
        self.server = connection.name
        self.remote_name = info.name
        self.name = tool_name(connection.name, info.name)  # type: ignore[misc]
        self.description = info.description or info.title or ""  # type: ignore[misc]
        self.timeout = connection.call_timeout  # type: ignore[misc]
        self._schema = schema_of(info.input_schema)

    def parameters(self) -> dict[str, Any]:
        return self._schema

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        arguments = args.model_dump()
        return result_value(await self.connection.call(self.remote_name, arguments))


class UnavailableMcpTool(Tool):
    """Stands in for a tool of a server that could not start: every call names the reason."""

    Args = FreeArgs

    def __init__(self, name: str, error: str) -> None:
        self.name = name  # type: ignore[misc]
        self.description = f"(unavailable: {error})"  # type: ignore[misc]
        self.error = error

    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "properties": {}}

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        raise ToolError(self.error)


def result_value(result: CallToolResult) -> Any:
    """What the model sees: structured content, else the text (or the content blocks)."""
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    if result.is_error:
        raise ToolError(" ".join(texts).strip() or "the MCP tool reported an error")
    if result.structured_content is not None:
        return result.structured_content
    if len(texts) == len(result.content):
        return "\n".join(texts)
    return [_block(block) for block in result.content]


def _block(block: Any) -> Any:
    data = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    if block.type in ("image", "audio"):
        # bytes: small ones inline, big ones to the workspace (tools/results.py)
        with contextlib.suppress(binascii.Error, ValueError):
            data["data"] = base64.b64decode(block.data, validate=True)
    return data


class McpHub:
    """The configured MCP servers of this process."""

    def __init__(
        self, specs: dict[str, McpServerSpec], call_timeout: float, start_timeout: float
    ) -> None:
        self.connections = {
            name: McpConnection(name, spec, call_timeout, start_timeout)
            for name, spec in specs.items()
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> McpHub | None:
        """The hub for `settings.mcp_config`; None when no config is set."""
        if settings.mcp_config is None:
            return None
        specs = load_mcp_config(settings.mcp_config)
        return cls(specs, settings.mcp_timeout, settings.mcp_start_timeout)

    def knows(self, name: str) -> bool:
        """`name` is `mcp__<server>__<tool>` of a configured server."""
        server = server_of(name)
        return server is not None and server in self.connections

    async def server_tools(self, server: str) -> list[McpTool]:
        """Every tool of one server (starting it if needed; McpStartError if it cannot)."""
        connection = self.connections[server]
        return [McpTool(connection, info) for info in await connection.tools()]

    async def tool(self, name: str) -> Tool:
        """The tool for `name`; a server that cannot start gives an `UnavailableMcpTool`."""
        server = server_of(name)
        if server is None or server not in self.connections:
            raise InvalidRequestError(
                f"unknown tool: {name} (no configured MCP server; configured: "
                f"{', '.join(self.connections) or 'none'})",
                param="tools",
                code="unknown_tool",
            )
        try:
            tools = await self.server_tools(server)
        except McpStartError as exc:
            return UnavailableMcpTool(name, exc.message)
        for tool in tools:
            if tool.name == name:
                return tool
        raise InvalidRequestError(
            f"unknown tool: {name} (MCP server {server!r} has: "
            f"{', '.join(t.name for t in tools) or 'no tools'})",
            param="tools",
            code="unknown_tool",
        )

    async def aclose(self) -> None:
        """Stop every started server."""
        for connection in self.connections.values():
            await connection.aclose()
