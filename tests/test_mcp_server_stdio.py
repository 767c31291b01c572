"""`nodetool mcp` as a real subprocess, driven by the `mcp` SDK's own stdio client."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from nodetool.tools.builtins import builtin_tools
from tests.support.mcp import PYTHON, TIME_SERVER, write_config
from tests.support.servers import REPO
from tests.support.workflows import EXAMPLES

QUOTE = EXAMPLES / "Shipping Quote.json"


def _server(data_dir: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=PYTHON,
        args=["-m", "nodetool", "mcp", *args],
        env={
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
            "NODETOOL_DATA_DIR": str(data_dir),
        },
        cwd=str(REPO),
    )


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026 per-request era and the handshake
async def test_tools_calculator_workflow_and_errors(tmp_path: Path, mode: str) -> None:
    params = _server(tmp_path, "--workflow", str(QUOTE))
    async with Client(params, mode=mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        builtins = {tool.name: tool.spec() for tool in builtin_tools()}
        expected = [name for name in builtins if name != "http_get"]
        assert [n for n in listed if not n.startswith("workflow_")] == expected
        for name in expected:  # same names and JSON schemas as the chat tools
            assert listed[name].input_schema == builtins[name].parameters
            assert listed[name].description == builtins[name].description
        workflow = listed["workflow_Shipping_Quote"]
        assert workflow.input_schema["properties"]["weight"]["type"] == "integer"
        assert workflow.input_schema["properties"]["weight"]["maximum"] == 1000

        result = await client.call_tool("calculator", {"expression": "(2 + 3) * 4 ** 2"})
        assert not result.is_error
        assert result.content[0].text == "80"

        run = await client.call_tool("workflow_Shipping_Quote", {"weight": 20})
        assert not run.is_error, run.content
        quote = run.structured_content["quote"]
        assert "Weight: 20 kg" in quote and "standard box" in quote
        assert json.loads(run.content[0].text) == run.structured_content

        failed = await client.call_tool("calculator", {"expression": "1/0"})
        assert failed.is_error and failed.content[0].text == "division by zero"
        bad_args = await client.call_tool("workflow_Shipping_Quote", {"weight": 5000})
        assert bad_args.is_error and "weight" in bad_args.content[0].text
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error and "unknown tool: no_such_tool" in unknown.content[0].text

        # the server survived every error
        again = await client.call_tool("calculator", {"expression": "6*7"})
        assert again.content[0].text == "42"


async def test_tools_flag_selects_the_offered_tools(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", time=TIME_SERVER)
    tools = "current_time,mcp__time__convert_time"
    async with Client(_server(tmp_path, "--tools", tools, "--mcp-config", str(config))) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names == ["current_time", "mcp__time__convert_time"]
        result = await client.call_tool("current_time", {"timezone": "Asia/Tokyo"})
        assert result.structured_content["utc_offset"] == "+09:00"
        args = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        proxied = await client.call_tool("mcp__time__convert_time", args)  # an MCP server's tool
        assert not proxied.is_error, proxied.content
        assert proxied.structured_content["target"]["datetime"][11:16] == "21:00"
        refused = await client.call_tool("calculator", {"expression": "1+1"})
        assert refused.is_error and "unknown tool: calculator" in refused.content[0].text


def test_bad_flags_are_one_line_errors(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [PYTHON, "-m", "nodetool", "mcp", "--tools", "calculator,nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODETOOL_DATA_DIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""  # stdout belongs to the protocol
    assert "unknown tool(s): nope" in proc.stderr
    assert "Traceback" not in proc.stderr
