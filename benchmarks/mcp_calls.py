"""MCP tool calls: nodetool's MCP client path against the `mcp` SDK client alone.

Both call `get_current_time` of the real `mcp-server-time` (one stdio subprocess each, started
before timing), interleaved, in one run: (a) the SDK's `Client.call_tool`, (b) the tool
registry's `execute` of `mcp__time__get_current_time` (argument validation, the lazily
started connection, result conversion, `json_safe`). Prints the p50 of each and the ratio.
Usage: python benchmarks/mcp_calls.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARGS = {"timezone": "Europe/Berlin"}


async def main(calls: int) -> None:
    from mcp import Client, StdioServerParameters

    from nodetool.config import Settings
    from nodetool.tools.base import ToolContext
    from nodetool.tools.registry import build_tool_registry
    from nodetool.types.messages import FunctionCall, ToolCall

    server = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"time": server}}))
        settings = Settings(data_dir=Path(tmp), mcp_config=config)
        registry = build_tool_registry(settings, None)
        context = ToolContext(user_id="1", settings=settings)
        name = "mcp__time__get_current_time"
        call = ToolCall(id="b", function=FunctionCall(name=name, arguments="{}"))
        params = StdioServerParameters(command=server["command"], args=server["args"])
        try:
            started = time.perf_counter()
            (tool,) = await registry.resolve([name], context)
            first_use = time.perf_counter() - started
            tools = {name: tool}
            async with Client(params) as client:
                direct: list[float] = []
                ours: list[float] = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    result = await client.call_tool("get_current_time", ARGS)
                    direct.append(time.perf_counter() - t0)
                    assert not result.is_error
                    t0 = time.perf_counter()
                    outcome = await registry.execute(call, ARGS, context, tools)
                    ours.append(time.perf_counter() - t0)
                    assert outcome.ok, outcome.error
        finally:
            await registry.aclose()
    d, o = statistics.median(direct) * 1000, statistics.median(ours) * 1000
    print(f"first use (start mcp-server-time, handshake, list tools): {first_use * 1000:.0f} ms")
    print(f"p50 per call: SDK client {d:.2f} ms, nodetool registry {o:.2f} ms")
    print(f"ratio nodetool / SDK: {o / d:.2f}x  (added {o - d:.2f} ms per call)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))
