"""/chat control frames and bad input: ping/pong, heartbeat, error frames that keep the socket
open, the frame size limit (1009), auth (1008)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from tests.chat_ws_support import chat_client, chunks_text, editor_server
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.servers import ServerThread

MAX_FRAME = 4096
HEARTBEAT = 0.3
TOKEN = "chat-ws-static-token"


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor_server(
        openai_stub.url,
        tmp_path_factory.mktemp("chat-ws-control"),
        max_frame_bytes=MAX_FRAME,
        ws_heartbeat_interval=HEARTBEAT,
    ) as running:
        yield running


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_ping_gets_pong(server, binary) -> None:
    async with chat_client(server, binary) as client:
        await client.assert_alive()


async def test_client_pong_is_ignored_and_starts_no_turn(server, openai_stub) -> None:
    openai_stub.reset()
    async with chat_client(server) as client:
        await client.send({"type": "pong", "ts": 1.0})
        await client.assert_alive()  # the pong produced no frame before our pong
    assert openai_stub.requests == []


async def test_server_sends_heartbeat_pings(server) -> None:
    async with chat_client(server, binary=True) as client:  # MessagePack before any frame
        first = await client.recv(keep_pings=True, timeout=HEARTBEAT * 20)
        client.binary = False
        await client.assert_alive()
        later = await client.recv(keep_pings=True, timeout=HEARTBEAT * 20)  # now in JSON
    for frame in (first, later):
        assert frame["type"] == "ping" and isinstance(frame["ts"], int | float)


async def test_replies_follow_the_latest_frame_encoding(server) -> None:
    async with chat_client(server, binary=True) as client:
        await client.assert_alive()
        client.binary = False
        await client.assert_alive()  # the JSON ping is answered in JSON
        client.binary = True
        frames = await client.chat("switch back")
    assert chunks_text(frames) == "Echo: switch back"


BAD_BINARY = [
    pytest.param(b"\xc1", "invalid_msgpack", id="undecodable-bytes"),
    pytest.param(b"\x92\x01", "invalid_msgpack", id="truncated-msgpack"),
    pytest.param(msgpack.packb([1, 2, 3]), "invalid_frame", id="msgpack-array"),
    pytest.param(msgpack.packb("text"), "invalid_frame", id="msgpack-string"),
]
BAD_TEXT = [
    pytest.param("{not json", "invalid_json", id="invalid-json"),
    pytest.param("[1, 2]", "invalid_frame", id="json-array"),
    pytest.param('"just a string"', "invalid_frame", id="json-string"),
]
BAD_FRAMES = [
    pytest.param({"role": "user", "content": 5}, "content", id="content-number"),
    pytest.param({"role": "user", "content": "hi", "model": 7}, "model", id="model-number"),
    pytest.param({"role": "user", "content": "hi", "tools": "calculator"}, "tools", id="tools-str"),
    pytest.param({"role": "user", "content": "hi", "thread_id": 12}, "thread_id", id="thread-int"),
    pytest.param({"role": "user", "content": "hi", "params": [1]}, "params", id="params-list"),
    pytest.param({"role": "assistant", "content": "hi"}, "role", id="assistant-role"),
    pytest.param({"role": "user"}, "content", id="no-content"),
    pytest.param({"type": "dance"}, "dance", id="unknown-type"),
    pytest.param({"type": 3}, "3", id="type-number"),
    pytest.param({"hello": "world"}, "type", id="no-type"),
    pytest.param({"command": "chat_message", "data": "hi"}, "data", id="command-data-str"),
    pytest.param({"command": "explode", "data": {}}, "explode", id="unknown-command"),
    pytest.param({"type": "tool_result", "ok": True}, "tool_call_id", id="result-no-id"),
    pytest.param(
        {"type": "tool_result", "tool_call_id": "call_q9"}, "call_q9", id="result-unknown-id"
    ),
    pytest.param({"type": "client_tools_manifest", "tools": "x"}, "tools", id="manifest-str"),
    pytest.param(
        {"role": "user", "content": "hi", "tools": ["nope_tool"]}, "nope_tool", id="unknown-tool"
    ),
]


@pytest.mark.parametrize(("data", "code"), BAD_BINARY)
async def test_bad_binary_frame_gets_error_and_socket_stays(server, data, code) -> None:
    async with chat_client(server, binary=True) as client:
        await client.send_raw(data)
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == code and error["message"]
        await client.assert_alive()


@pytest.mark.parametrize(("data", "code"), BAD_TEXT)
async def test_bad_text_frame_gets_error_and_socket_stays(server, data, code) -> None:
    async with chat_client(server, binary=False) as client:
        await client.send_raw(data)
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == code and error["message"]
        await client.assert_alive()


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
@pytest.mark.parametrize(("frame", "names"), BAD_FRAMES)
async def test_invalid_frame_gets_error_naming_the_problem(
    server, openai_stub, binary, frame, names
) -> None:
    openai_stub.reset()
    async with chat_client(server, binary) as client:
        await client.send(frame)
        error = await client.recv()
        assert error["type"] == "error", error
        assert names in error["message"]
        await client.assert_alive()
        assert chunks_text(await client.chat("after the error")) == "Echo: after the error"
    assert len(openai_stub.requests) == 1  # the bad frame never reached the model


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_frame_over_the_limit_closes_with_1009(server, binary) -> None:
    async with chat_client(server, binary) as client:
        await client.assert_alive()
        await client.send({"role": "user", "content": "x" * (MAX_FRAME + 10)})
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_frame_just_under_the_limit_is_fine(server) -> None:
    async with chat_client(server, binary=False) as client:
        body = json.dumps({"type": "ping", "pad": "y" * (MAX_FRAME - 100)})
        assert len(body) <= MAX_FRAME
        await client.send_raw(body)
        assert (await client.recv())["type"] == "pong"


@pytest.fixture(scope="module")
def static_server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor_server(
        openai_stub.url,
        tmp_path_factory.mktemp("chat-ws-static"),
        auth_provider="static",
        worker_auth_token=TOKEN,
    ) as running:
        yield running


@pytest.mark.parametrize(
    "query", [pytest.param("", id="no-token"), pytest.param("api_key=wrong", id="bad-token")]
)
async def test_unauthenticated_socket_is_closed_1008(static_server, query) -> None:
    async with chat_client(static_server, query=query) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        pytest.param(f"api_key={TOKEN}", None, id="api_key"),
        pytest.param(f"token={TOKEN}", None, id="token"),
        pytest.param("", {"Authorization": f"Bearer {TOKEN}"}, id="bearer"),
    ],
)
async def test_authenticated_socket_chats(static_server, query, headers) -> None:
    async with chat_client(static_server, query=query, additional_headers=headers) as client:
        frames = await client.chat("authorised")
    assert chunks_text(frames) == "Echo: authorised"


@pytest.fixture(scope="module")
def two_users(openai_stub, tmp_path_factory) -> Iterator[tuple[ServerThread, SupabaseStub]]:
    with (
        SupabaseStub() as supabase,
        editor_server(
            openai_stub.url,
            tmp_path_factory.mktemp("chat-ws-users"),
            auth_provider="supabase",
            supabase_url=supabase.url,
            supabase_key=supabase.key,
        ) as running,
    ):
        yield running, supabase


async def test_another_users_thread_id_is_a_separate_thread(two_users, openai_stub) -> None:
    """Thread ids are per user: bob naming alice's id gets his own thread, sees none of hers."""
    server, supabase = two_users
    alice = {"Authorization": f"Bearer {supabase.issue('alice')}"}
    bob = {"Authorization": f"Bearer {supabase.issue('bob')}"}
    async with chat_client(server, additional_headers=alice) as client:
        await client.chat("alice's secret", thread_id="shared-name")
    openai_stub.reset()
    async with chat_client(server, additional_headers=bob) as client:
        frames = await client.chat("bob writes here", thread_id="shared-name")
        assert [f for f in frames if f["type"] == "error"] == []
        assert chunks_text(frames) == "Echo: bob writes here"
        assert {f["thread_id"] for f in frames} == {"shared-name"}
    # the model saw bob's history only
    (request,) = openai_stub.requests
    assert [m["content"] for m in request["messages"]] == ["bob writes here"]

    def stored(headers: dict[str, str]) -> list[str]:
        response = httpx.get(
            f"{server.url}/api/messages", params={"thread_id": "shared-name"}, headers=headers
        )
        return [m["content"] for m in response.json()["messages"]]

    assert stored(alice) == ["alice's secret", "Echo: alice's secret"]
    assert stored(bob) == ["bob writes here", "Echo: bob writes here"]
