"""A chat turn in which the model calls a tool of the real `mcp-server-time` (from PyPI):
`nodetool serve --mcp-config FILE` as a real process, on `/v1`, on `/chat`, and in the
interactive `nodetool chat --ws`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pexpect
import pytest

from tests.chat_ws_support import chat_client, chunks_text, of_type
from tests.support.mcp import PYTHON, TIME_SERVER, write_config
from tests.support.servers import REPO, CliServer

TOOL = "mcp__time__get_current_time"
ASK = f'What time is it in Paris? [[tool:{TOOL} {{"timezone": "Europe/Paris"}}]]'


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("mcp-chat") / "mcp.json", time=TIME_SERVER)


@pytest.fixture(scope="module")
def server(openai_stub, config: Path, tmp_path_factory) -> Iterator[CliServer]:
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DATA_DIR": str(tmp_path_factory.mktemp("mcp-chat-data")),
        "AUTH_PROVIDER": "none",
    }
    args = ("--provider", "openai", "--default-model", "stub-model", "--mcp-config", str(config))
    with CliServer("serve", *args, "--tools", f"calculator,{TOOL}", env=env) as srv:
        yield srv


def _paris(content: str) -> dict:
    result = json.loads(content.removeprefix("Tool results: "))
    assert result["timezone"] == "Europe/Paris"
    assert result["datetime"][-6:] in ("+01:00", "+02:00")
    return result


def test_v1_turn_calls_the_mcp_tool(server, openai_stub) -> None:
    openai_stub.reset()
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client:
        completion = client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": ASK}]
        )
    message = completion.choices[0].message
    assert message.tool_calls is None  # server tools run inside the turn
    _paris(message.content)
    offered = {tool["function"]["name"]: tool for tool in openai_stub.requests[0]["tools"]}
    assert set(offered) == {"calculator", TOOL}
    assert "timezone" in offered[TOOL]["function"]["parameters"]["properties"]
    tool_message = openai_stub.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and "Europe/Paris" in tool_message["content"]


async def test_chat_ws_turn_calls_the_mcp_tool(server, openai_stub) -> None:
    openai_stub.reset()
    async with chat_client(server) as client:
        frames = await client.chat(ASK, model="stub-model", tools=[TOOL])
    (call,) = of_type(frames, "tool_call")
    assert call["name"] == TOOL and call["target"] == "server"
    assert call["args"] == {"timezone": "Europe/Paris"}
    (result,) = of_type(frames, "tool_result")
    assert result["ok"] is True and result["result"]["timezone"] == "Europe/Paris"
    _paris(chunks_text(frames))
    assert [tool["function"]["name"] for tool in openai_stub.requests[0]["tools"]] == [TOOL]


async def test_chat_ws_unknown_mcp_tool_is_an_error_frame(server) -> None:
    async with chat_client(server) as client:
        await client.send({"role": "user", "content": "hi", "tools": ["mcp__time__nope"]})
        error = await client.recv()  # refused before the turn: not on the allow-list
        assert error["type"] == "error" and error["code"] == "tool_not_enabled"
        assert "mcp__time__nope" in error["message"]
        assert TOOL in error["message"]  # what the server enabled
        await client.assert_alive()


def test_interactive_chat_shows_the_mcp_tool_call(server, tmp_path: Path) -> None:
    env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.update(NODETOOL_DATA_DIR=str(tmp_path), NODETOOL_API_KEY="")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "nodetool", "chat", "--url", server.url, "--ws", "--tools", TOOL],
        env=env,
        cwd=str(REPO),
        dimensions=(40, 160),
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect("you ›")
        child.sendline(ASK)
        child.expect("tool call · MCP server time")
        child.expect(TOOL)
        child.expect("Europe/Paris")
        child.expect("Tool results:")
        child.expect("you ›")
    finally:
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()


def test_startup_names_a_server_that_cannot_start(openai_stub, tmp_path: Path) -> None:
    broken = write_config(
        tmp_path / "mcp.json", broken={"command": PYTHON, "args": ["-m", "no_such_mcp_module"]}
    )
    env = {**os.environ, "OPENAI_BASE_URL": openai_stub.url, "OPENAI_API_KEY": "sk-test"}
    env["NODETOOL_DATA_DIR"] = str(tmp_path)
    command = [PYTHON, "-m", "nodetool", "serve", "--provider", "openai", "--port", "9"]
    command += ["--mcp-config", str(broken), "--tools", "mcp__broken__anything"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "MCP server 'broken' could not start" in lines[0]
    assert "No module named no_such_mcp_module" in lines[0]
