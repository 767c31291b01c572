"""`--tools` is an allow-list: a client cannot enable server tools the operator did not."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.chat_ws_support import chat_client, of_type
from tests.security.support import HealthProbe, cli_server, server_env

OFFLINE = ["calculator", "current_time", "read_file", "write_file", "list_directory"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("allowlist")


@pytest.fixture(scope="module")
def calculator_only(openai_stub, home):
    with cli_server("serve", "--tools", "calculator", env=server_env(openai_stub, home)) as srv:
        yield srv


@pytest.mark.parametrize("tool", ["write_file", "read_file", "http_get"])
async def test_a_client_cannot_enable_a_server_tool(
    calculator_only, openai_stub, home, tool: str
) -> None:
    openai_stub.reset()
    ask = f'[[tool:{tool} {{"path": "pwned.txt", "content": "x", "url": "http://x"}}]] go'
    with HealthProbe(calculator_only.url) as probe:
        async with chat_client(calculator_only, binary=False) as client:
            while probe.wants_more():
                await client.send({"role": "user", "content": ask, "tools": [tool]})
                error = await client.recv()
                assert error["type"] == "error" and error["code"] == "tool_not_enabled"
                assert tool in error["message"] and "calculator" in error["message"]
            await client.assert_alive()
    probe.check()
    assert openai_stub.requests == []  # refused before any upstream call
    assert not list((home / "data").rglob("pwned.txt"))


async def test_the_model_cannot_call_a_tool_that_was_not_offered(
    calculator_only, openai_stub, home
) -> None:
    openai_stub.reset()
    async with chat_client(calculator_only, binary=False) as client:
        frames = await client.chat(
            '[[tool:write_file {"path": "sneaky.txt", "content": "x"}]] hi', tools=["calculator"]
        )
    offered = [t["function"]["name"] for t in openai_stub.requests[0]["tools"]]
    assert offered == ["calculator"]
    results = of_type(frames, "tool_result")
    assert results and not results[0]["ok"] and "unknown tool" in results[0]["error"]
    assert not list((home / "data").rglob("sneaky.txt"))


async def test_client_defined_tools_are_not_affected(calculator_only, openai_stub) -> None:
    openai_stub.reset()
    manifest = {
        "type": "client_tools_manifest",
        "tools": [{"name": "write_file", "description": "the client's own", "parameters": {}}],
    }
    async with chat_client(calculator_only, binary=False) as client:
        await client.send(manifest)
        await client.send(
            {"role": "user", "content": "[[tool:write_file {}]] hi", "tools": ["write_file"]}
        )
        call, _ = await client.until("tool_call")
        assert call["target"] == "client" and call["name"] == "write_file"


async def test_serve_default_enables_offline_builtins_but_not_http_get(
    openai_stub, tmp_path
) -> None:
    openai_stub.reset()
    with cli_server("serve", env=server_env(openai_stub, tmp_path)) as server:
        async with chat_client(server, binary=False) as client:
            await client.chat("hi")  # names no tools: none offered
            await client.chat("files", tools=OFFLINE)  # allowed on request
            await client.send({"role": "user", "content": "fetch", "tools": ["http_get"]})
            error = await client.recv()
    assert error["code"] == "tool_not_enabled" and "http_get" in error["message"]
    assert "tools" not in openai_stub.requests[0]
    offered = [t["function"]["name"] for t in openai_stub.requests[1]["tools"]]
    assert offered == OFFLINE


@pytest.mark.parametrize("kind", ["worker", "chat-server"])
def test_worker_and_chat_server_enable_no_tools(openai_stub, tmp_path, kind: str) -> None:
    openai_stub.reset()
    client_tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    with cli_server(kind, env=server_env(openai_stub, tmp_path)) as server:
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(server.url + "/v1/chat/completions", json=body).status_code == 200
        body["tools"] = [client_tool]  # OpenAI function tools are the client's: passed through
        assert httpx.post(server.url + "/v1/chat/completions", json=body).status_code == 200
    assert "tools" not in openai_stub.requests[0]
    assert [t["function"]["name"] for t in openai_stub.requests[1]["tools"]] == ["lookup"]
