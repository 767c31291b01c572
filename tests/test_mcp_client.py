"""MCP servers' tools in the tool registry: the real `mcp-server-time` and a stub MCP server
(both real subprocesses over stdio): lazy start once per process, calls, error results,
restart after death, per-call timeouts, stop with the registry, one-line start failures."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError
from nodetool.tools.base import ToolContext, ToolOutcome
from nodetool.tools.mcp_config import McpConfigError, load_mcp_config, split_name, tool_name
from nodetool.tools.registry import ToolRegistry, build_tool_registry
from nodetool.types.messages import FunctionCall, ToolCall
from tests.support.mcp import PYTHON, STUB_SERVER, TIME_SERVER, write_config


def _registry(tmp_path: Path, **settings: Any) -> tuple[ToolRegistry, ToolContext]:
    config = write_config(
        tmp_path / "mcp.json",
        time=TIME_SERVER,
        stub=STUB_SERVER,
        broken={"command": PYTHON, "args": ["-m", "no_such_module_for_mcp"]},
    )
    settings.setdefault("tools", ["*"])  # MCP tools run only when the allow-list has them
    values = Settings(data_dir=tmp_path, mcp_config=config, **settings)
    return build_tool_registry(values, None), ToolContext(user_id="1", settings=values)


async def _call(
    registry: ToolRegistry, context: ToolContext, name: str, args: dict[str, Any]
) -> ToolOutcome:
    (tool,) = await registry.resolve([name], context)
    call = ToolCall(id="c1", function=FunctionCall(name=name, arguments="{}"))
    return await registry.execute(call, args, context, {name: tool})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if not _alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_time_server_tool_is_lazy_named_and_called(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path)
    assert registry.mcp is not None
    connection = registry.mcp.connections["time"]
    assert connection.starts == 0 and not connection.running  # nothing starts up front
    try:
        registry.validate_names(["mcp__time__get_current_time", "calculator"])
        # two turns needing the server at once still start it once
        (tool,), (twin,) = await asyncio.gather(
            registry.resolve(["mcp__time__get_current_time"], context),
            registry.resolve(["mcp__time__get_current_time"], context),
        )
        assert connection.starts == 1 and twin.spec() == tool.spec()
        spec = tool.spec()
        assert spec.name == "mcp__time__get_current_time"
        assert spec.parameters["type"] == "object"
        assert "timezone" in spec.parameters["properties"]
        outcome = await _call(
            registry, context, "mcp__time__get_current_time", {"timezone": "Asia/Tokyo"}
        )
        assert outcome.ok, outcome.error
        assert outcome.result["timezone"] == "Asia/Tokyo"
        assert outcome.result["datetime"].endswith("+09:00")
        again = await _call(
            registry, context, "mcp__time__get_current_time", {"timezone": "Europe/Paris"}
        )
        assert again.ok and again.result["timezone"] == "Europe/Paris"
        assert connection.starts == 1  # once per process
        bad = await _call(
            registry, context, "mcp__time__get_current_time", {"timezone": "Nowhere/Atlantis"}
        )
        assert not bad.ok and "Nowhere/Atlantis" in (bad.error or "")
    finally:
        await registry.aclose()
    assert not connection.running


async def test_unknown_names_are_clear_errors(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path)
    try:
        with pytest.raises(InvalidRequestError, match="mcp__nowhere__x"):
            registry.validate_names(["mcp__nowhere__x"])
        with pytest.raises(InvalidRequestError, match="get_current_time"):
            await registry.resolve(["mcp__time__no_such_tool"], context)
    finally:
        await registry.aclose()


async def test_server_that_cannot_start_is_named_in_the_tool_result(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path)
    try:
        outcome = await _call(registry, context, "mcp__broken__anything", {})
        assert not outcome.ok
        error = outcome.error or ""
        assert "MCP server 'broken' could not start" in error
        assert "No module named no_such_module_for_mcp" in error
        assert "\n" not in error and "Traceback" not in error
    finally:
        await registry.aclose()


async def test_tool_errors_and_restart_after_a_crash(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path)
    connection = registry.mcp.connections["stub"]  # type: ignore[union-attr]
    try:
        failed = await _call(registry, context, "mcp__stub__fail", {"reason": "disk on fire"})
        assert not failed.ok and "disk on fire" in (failed.error or "")
        first = await _call(registry, context, "mcp__stub__pid", {})
        assert first.ok
        first_pid = first.result["result"]

        crashed = await _call(registry, context, "mcp__stub__crash", {})
        assert not crashed.ok
        assert "exited during the call" in (crashed.error or "")
        assert await _wait_dead(first_pid)

        second = await _call(registry, context, "mcp__stub__pid", {})
        assert second.ok, second.error
        assert second.result["result"] != first_pid
        assert connection.starts == 2

        os.kill(second.result["result"], signal.SIGKILL)  # dies between calls
        assert await _wait_dead(second.result["result"])
        for _ in range(200):  # the connection notices the death by itself (end of its stream)
            if not connection.running:
                break
            await asyncio.sleep(0.05)
        assert not connection.running
        echoed = await _call(registry, context, "mcp__stub__echo", {"text": "back"})
        assert echoed.ok and echoed.result == {"result": "echo: back"}
        assert connection.starts == 3
    finally:
        await registry.aclose()


async def test_per_call_timeout_then_the_server_still_answers(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path, mcp_timeout=0.5)
    try:
        slow = await _call(registry, context, "mcp__stub__sleep", {"seconds": 5})
        assert not slow.ok
        assert slow.error == "mcp__stub__sleep timed out after 0.5 s"
        quick = await _call(registry, context, "mcp__stub__echo", {"text": "still here"})
        assert quick.ok and quick.result == {"result": "echo: still here"}
    finally:
        await registry.aclose()


async def test_servers_stop_with_the_registry(tmp_path: Path) -> None:
    registry, context = _registry(tmp_path)
    outcome = await _call(registry, context, "mcp__stub__pid", {})
    pid = outcome.result["result"]
    assert _alive(pid)
    await registry.aclose()
    assert await _wait_dead(pid)


def test_config_errors_name_the_file_and_server(tmp_path: Path) -> None:
    cases = {
        "not json": "not valid JSON",
        '{"servers": {}}': "mcpServers",
        '{"mcpServers": {"a b": {"command": "x"}}}': "'a b'",
        '{"mcpServers": {"x__y": {"command": "x"}}}': "'x__y'",
        '{"mcpServers": {"s": {}}}': "MCP server 's': give either",
        '{"mcpServers": {"s": {"command": "x", "url": "http://h/mcp"}}}': "give either",
        '{"mcpServers": {"s": {"url": "ftp://h"}}}': "http:// or https://",
        '{"mcpServers": {"s": {"command": "x", "args": "no-list"}}}': "args",
    }
    for text, expected in cases.items():
        path = tmp_path / "c.json"
        path.write_text(text)
        with pytest.raises(McpConfigError, match=expected) as info:
            load_mcp_config(path)
        assert str(path) in info.value.message
    with pytest.raises(McpConfigError, match="cannot read"):
        load_mcp_config(tmp_path / "missing.json")
    path = write_config(
        tmp_path / "ok.json",
        on={"command": "x", "args": ["a"], "env": {"K": "V"}},
        remote={"url": "https://h/mcp", "headers": {"Authorization": "Bearer t"}},
        off={"command": "x", "disabled": True},
    )
    specs = load_mcp_config(path)
    assert list(specs) == ["on", "remote"]
    assert specs["on"].transport == "stdio" and specs["remote"].transport == "http"


def test_tool_names_are_valid_function_names() -> None:
    assert tool_name("time", "get_current_time") == "mcp__time__get_current_time"
    assert tool_name("fs", "read.file/v2") == "mcp__fs__read_file_v2"
    long = tool_name("server", "x" * 100)
    assert len(long) == 64 and long != tool_name("server", "x" * 99)
    assert split_name("mcp__time__get_current_time") == ("time", "get_current_time")
    assert split_name("mcp__time") is None and split_name("calculator") is None


def test_tools_command_lists_mcp_tools_with_their_server(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from nodetool.cli.main import app

    config = write_config(
        tmp_path / "mcp.json",
        time=TIME_SERVER,
        broken={"command": PYTHON, "args": ["-m", "no_such_module_for_mcp"]},
    )
    result = CliRunner().invoke(app, ["tools", "--json", "--mcp-config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["calculator"]["server"] is None
    for name in ("mcp__time__get_current_time", "mcp__time__convert_time"):
        assert rows[name]["server"] == "time"
        assert rows[name]["parameters"]["type"] == "object"
    assert "could not start" in rows["mcp__broken__*"]["error"]
    table = CliRunner().invoke(app, ["tools", "--mcp-config", str(config)], env={"COLUMNS": "250"})
    assert table.exit_code == 0
    assert "mcp__time__get_current_time" in table.stdout and "MCP time" in table.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    refused = CliRunner().invoke(app, ["tools", "--mcp-config", str(bad)])
    assert refused.exit_code == 2 and "not valid JSON" in refused.stderr


def test_results_become_what_the_model_sees() -> None:
    import base64

    from mcp.types import CallToolResult, ImageContent, TextContent

    from nodetool.errors import ToolError
    from nodetool.tools.mcp_tools import result_value
    from nodetool.tools.results import json_safe

    text = CallToolResult(content=[TextContent(text="a"), TextContent(text="b")])
    assert result_value(text) == "a\nb"
    structured = CallToolResult(content=[TextContent(text="{}")], structured_content={"k": 1})
    assert result_value(structured) == {"k": 1}
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 10
    image = CallToolResult(
        content=[
            TextContent(text="chart:"),
            ImageContent(data=base64.b64encode(png).decode(), mime_type="image/png"),
        ]
    )
    blocks = json_safe(result_value(image))
    assert blocks[0] == {"type": "text", "text": "chart:"}
    assert blocks[1]["data"]["content_type"] == "image/png"
    assert base64.b64decode(blocks[1]["data"]["base64"]) == png
    failed = CallToolResult(content=[TextContent(text="no such city")], is_error=True)
    with pytest.raises(ToolError, match="no such city"):
        result_value(failed)
