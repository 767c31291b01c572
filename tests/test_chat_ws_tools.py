"""/chat tool frames: server tools, client tools (round trip, timeout, stop) over a real app."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.chat_ws_support import chat_client, chunks_text, editor_server, of_type
from tests.support.servers import ServerThread

CLIENT_TOOL_TIMEOUT = 1.0
MANIFEST = {
    "type": "client_tools_manifest",
    "tools": [
        {
            "name": "get_location",
            "description": "The user's current location.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
}
ASK_LOCATION = '[[tool:get_location {"city": "Paris"}]] where am I?'
ENCODINGS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor_server(
        openai_stub.url,
        tmp_path_factory.mktemp("chat-ws-tools"),
        client_tool_timeout=CLIENT_TOOL_TIMEOUT,
    ) as running:
        yield running


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_server_tool_frames(server, openai_stub, binary) -> None:
    thread_id = f"calc-{uuid.uuid4().hex}"
    async with chat_client(server, binary) as client:
        frames = await client.chat(
            '[[tool:calculator {"expression": "2+3"}]] add please',
            tools=["calculator"],
            thread_id=thread_id,
        )
    kinds = [f["type"] for f in frames]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    (call,) = of_type(frames, "tool_call")
    assert call["name"] == "calculator" and call["target"] == "server"
    assert call["args"] == {"expression": "2+3"}
    (result,) = of_type(frames, "tool_result")
    assert result["tool_call_id"] == call["tool_call_id"] and result["ok"] is True
    assert "5" in json.dumps(result["result"])
    assert chunks_text(frames).startswith("Tool results: ") and "5" in chunks_text(frames)
    messages = of_type(frames, "message")
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[0]["tool_calls"][0]["id"] == call["tool_call_id"]
    assert messages[1]["tool_call_id"] == call["tool_call_id"]
    assert {f["thread_id"] for f in frames} == {thread_id}
    assert openai_stub.requests[-1]["tools"][0]["function"]["name"] == "calculator"
    stored = httpx.get(f"{server.url}/api/messages", params={"thread_id": thread_id}).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "tool", "assistant"]


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_client_tool_round_trip(server, openai_stub, binary) -> None:
    async with chat_client(server, binary) as client:
        await client.send(MANIFEST)
        await client.send({"role": "user", "content": ASK_LOCATION})
        call, before = await client.until("tool_call")
        assert call["target"] == "client" and call["name"] == "get_location"
        assert call["args"] == {"city": "Paris"}
        await client.send(
            {
                "type": "tool_result",
                "tool_call_id": call["tool_call_id"],
                "ok": True,
                "result": {"lat": 48.85, "lon": 2.35},
            }
        )
        frames = before + await client.turn()
    assert of_type(frames, "tool_result") == []  # the client already knows its own result
    assert chunks_text(frames) == 'Tool results: {"lat": 48.85, "lon": 2.35}'
    offered = [t["function"]["name"] for t in openai_stub.requests[-1]["tools"]]
    assert offered == ["get_location"]
    tool_message = of_type(frames, "message")[1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call["tool_call_id"]


async def test_client_tool_error_result_reaches_model(server) -> None:
    async with chat_client(server, binary=False) as client:
        await client.send(MANIFEST)
        await client.send({"role": "user", "content": ASK_LOCATION})
        call, _ = await client.until("tool_call")
        await client.send(
            {
                "type": "tool_result",
                "tool_call_id": call["tool_call_id"],
                "ok": False,
                "error": "GPS is off",
            }
        )
        frames = await client.turn()
    assert "GPS is off" in chunks_text(frames)


async def test_client_tool_timeout_gives_model_an_error(server) -> None:
    async with chat_client(server) as client:
        await client.send(MANIFEST)
        await client.send({"role": "user", "content": ASK_LOCATION})
        call, _ = await client.until("tool_call")
        frames = await client.turn()  # never answered
        text = chunks_text(frames)
        assert "timed out" in text and '"ok": false' in text
        await client.send({"type": "tool_result", "tool_call_id": call["tool_call_id"], "ok": True})
        late = await client.recv()
        assert late["type"] == "error" and late["code"] == "unknown_tool_call"
        await client.assert_alive()


async def test_stop_while_waiting_for_client_tool(server, openai_stub) -> None:
    async with chat_client(server) as client:
        await client.send(MANIFEST)
        await client.send({"role": "user", "content": ASK_LOCATION})
        call, _ = await client.until("tool_call")
        requests_before = len(openai_stub.requests)
        await client.send({"type": "stop"})
        _, frames = await client.until("chunk", done=True)
        assert len(of_type(frames, "generation_stopped")) == 1
        await client.send({"type": "tool_result", "tool_call_id": call["tool_call_id"], "ok": True})
        assert (await client.recv())["code"] == "unknown_tool_call"
        await client.assert_alive()
    assert len(openai_stub.requests) == requests_before  # the turn did not go on


async def test_unknown_tool_names_are_rejected(server, openai_stub) -> None:
    async with chat_client(server, binary=False) as client:
        await client.send({"role": "user", "content": "hi", "tools": ["no_such_tool"]})
        error = await client.recv()
        assert error["type"] == "error" and "no_such_tool" in error["message"]
        await client.assert_alive()
        frames = await client.chat("hi again", tools=[])
    assert chunks_text(frames) == "Echo: hi again"


async def test_bad_manifest_is_rejected(server) -> None:
    async with chat_client(server) as client:
        await client.send({"type": "client_tools_manifest", "tools": [{"name": "bad name!"}]})
        error = await client.recv()
        assert error["type"] == "error" and "tools" in error["message"]
        await client.assert_alive()
