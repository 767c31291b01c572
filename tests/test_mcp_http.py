"""`/mcp` (Streamable HTTP) on `serve` and `worker`, with auth off and on; and the client side
over HTTP: a nodetool whose MCP config points at another nodetool's `/mcp` with a token."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from mcp import Client

from nodetool.config import Settings
from nodetool.tools.base import ToolContext
from nodetool.tools.registry import build_tool_registry
from nodetool.types.messages import FunctionCall, ToolCall
from tests.support.mcp import write_config
from tests.support.v1 import running
from tests.support.workflows import EXAMPLES

TOKEN = "mcp-http-test-token-0123456789"
QUOTE = EXAMPLES / "Shipping Quote.json"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize(("kind", "mode"), [("serve", "auto"), ("worker", "legacy")])
async def test_mcp_endpoint_without_auth(kind: str, mode: str, openai_stub, tmp_path: Path) -> None:
    overrides = {"tools": ["calculator"], "workflow_files": [QUOTE]}
    with running(kind, openai_stub, tmp_path, **overrides) as server:
        stream = httpx.get(server.url + "/mcp", headers={"Accept": "text/event-stream"})
        assert stream.status_code == 405 and "error" in stream.json()  # stateless: POST only
        async with Client(server.url + "/mcp", mode=mode) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names == ["calculator", "workflow_Shipping_Quote"]
            result = await client.call_tool("calculator", {"expression": "2**10"})
            assert not result.is_error and result.content[0].text == "1024"
            run = await client.call_tool("workflow_Shipping_Quote", {"weight": 1})
            assert "Under 2 kg? True" in run.structured_content["quote"]
            failed = await client.call_tool("calculator", {"expression": "nope("})
            assert failed.is_error


def test_chat_server_has_no_mcp_endpoint(openai_stub, tmp_path: Path) -> None:
    with running("chat-server", openai_stub, tmp_path) as server:
        response = httpx.post(server.url + "/mcp", json=INIT, headers=HEADERS)
        assert response.status_code == 404
        assert "error" in response.json()


@pytest.mark.parametrize("kind", ["serve", "worker"])
async def test_mcp_endpoint_behind_the_static_token(kind: str, openai_stub, tmp_path: Path) -> None:
    overrides = {"tools": ["calculator"], "auth_provider": "static", "worker_auth_token": TOKEN}
    with running(kind, openai_stub, tmp_path / "server", **overrides) as server:
        url = server.url + "/mcp"
        refused = httpx.post(url, json=INIT, headers=HEADERS)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "invalid_request_error"
        wrong = httpx.post(url, json=INIT, headers={**HEADERS, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        accepted = httpx.post(
            url, json=INIT, headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"}
        )
        assert accepted.status_code == 200
        assert accepted.json()["result"]["serverInfo"]["name"] == "nodetool"

        # the client side: another nodetool reaches these tools through its MCP config
        config = write_config(
            tmp_path / "mcp.json",
            remote={"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}},
            locked={"url": url},
        )
        settings = Settings(
            data_dir=tmp_path / "client",
            mcp_config=config,
            tools=["mcp__remote__*", "mcp__locked__*"],
        )
        registry = build_tool_registry(settings, None)
        context = ToolContext(user_id="1", settings=settings)
        try:
            (tool,) = await registry.resolve(["mcp__remote__calculator"], context)
            call = ToolCall(id="c", function=FunctionCall(name=tool.name, arguments="{}"))
            outcome = await registry.execute(
                call, {"expression": "7*6"}, context, {tool.name: tool}
            )
            assert outcome.ok and outcome.result == "42"
            (locked,) = await registry.resolve(["mcp__locked__calculator"], context)
            blocked = await registry.execute(
                call, {"expression": "1"}, context, {call.name: locked}
            )
            assert not blocked.ok
            assert "MCP server 'locked' could not start" in (blocked.error or "")
            assert "HTTP 401" in (blocked.error or "")
        finally:
            await registry.aclose()


def test_bad_mcp_requests_get_clear_errors(openai_stub, tmp_path: Path) -> None:
    rpc = {"jsonrpc": "2.0", "id": 1}
    cases = [  # (body, content type, status, expected JSON-RPC error code or None)
        (b"{nope", "application/json", 400, -32700),
        (b"[]", "application/json", 400, -32602),
        (b'{"a": 1}', "application/json", 400, -32602),
        (b"x", "text/plain", 400, None),
        (
            json.dumps({**rpc, "method": "tools/call", "params": {"name": 5}}).encode(),
            None,
            200,
            -32602,
        ),
        (json.dumps({**rpc, "method": "no/such"}).encode(), None, 200, -32601),
    ]
    with running("serve", openai_stub, tmp_path, tools=["calculator"]) as server:
        for body, content_type, status, code in cases:
            headers = {**HEADERS, "Content-Type": content_type or "application/json"}
            response = httpx.post(server.url + "/mcp", content=body, headers=headers)
            assert response.status_code == status, (body, response.text)
            if code is not None:
                assert response.json()["error"]["code"] == code
        too_big = httpx.post(server.url + "/mcp", content=b"1" * (5 * 1024 * 1024), headers=HEADERS)
        assert too_big.status_code == 413 and "error" in too_big.json()
