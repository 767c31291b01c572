"""A small MCP server (the `mcp` SDK's MCPServer over stdio) for the MCP client tests.

Run: `python -m tests.stubs.mcp_stub_server`. Tools: `echo`, `pid` (its process id),
`sleep` (seconds, then "slept"), `fail` (raises: an `isError` result), `crash` (the process
exits at once, mid-call).
"""

from __future__ import annotations

import asyncio
import os

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("stub")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return f"echo: {text}"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "slept"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """The process dies during the call."""
    os._exit(3)


if __name__ == "__main__":
    server.run()
