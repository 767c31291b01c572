"""The upstream HTTP client (nodetool.providers.http_client) and the openai provider's
non-stream path, against real servers on loopback.

The scripted raw HTTP/1.1 server (tests/support/raw_http.py) produces exact wire shapes:
Content-Length, chunked and close-delimited bodies, `Connection: close`, drops, garbage and
silence. The OpenAI stub (uvicorn) serves the provider tests, over plain TCP and over TLS.
Proxies and the connection cap: tests/test_providers_http_proxy.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time

import httpx
import pytest
import uvloop

from nodetool.errors import ProviderError, ProviderTimeoutError
from nodetool.providers.http_client import (
    ConnectError,
    ConnectTimeout,
    HttpClient,
    HttpError,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
)
from nodetool.providers.openai_provider import OpenAIProvider
from nodetool.types.events import Finish, TextDelta, ToolCallDelta, Usage
from nodetool.types.messages import ChatOptions, Message, ToolSpec
from tests.support.collect import collect
from tests.support.raw_http import CHUNKED, LAST, Act, RawServer, chunk, ok, serve_tls_stub
from tests.support.servers import free_port
from tests.support.v1 import running

tls_stub = pytest.fixture(scope="module", name="tls_stub")(serve_tls_stub)
WAIT = 5.0  # an upper bound for things that happen at once; never reached when they work
NON_STREAM = ChatOptions(stream=False)
WEATHER = ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})


# ---- framing, keep-alive, pooling ------------------------------------------------------------


async def test_content_length_bodies_reuse_one_connection() -> None:
    async with RawServer(Act([ok(b"first")]), Act([ok(b'{"a": 1}')])) as server:
        client = HttpClient(server.url + "/v1/", headers={"Authorization": "Bearer k"})
        response = await client.get("models")
        assert (response.status, response.reason) == (200, "OK")
        assert response.header("Content-Length") == "5"
        assert await response.read() == b"first"
        response = await client.request("POST", "chat?x=1", json_body={"q": "é"})
        assert await response.json() == {"a": 1}
        assert server.connections == 1
        assert client.idle_count() == 1
        get, post = server.heads
        assert get.startswith("GET /v1/models HTTP/1.1\r\n")
        assert post.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
        port = server.url.rsplit(":", 1)[1]
        for line in (
            f"host: 127.0.0.1:{port}",
            "accept-encoding: identity",
            "authorization: Bearer k",
        ):
            assert line in get.split("\r\n") and line in post.split("\r\n")
        assert "content-type: application/json" in post.split("\r\n")
        assert json.loads(server.bodies[1]) == {"q": "é"}
        await client.aclose()


async def test_chunked_body_streams_as_it_arrives() -> None:
    gate = asyncio.Event()
    act = Act([CHUNKED + chunk(b"hello "), chunk(b"world") + LAST], gate=gate)
    async with RawServer(act, Act([ok(b"again")])) as server:
        client = HttpClient(server.url)
        response = await client.get("/stream")
        assert await response.receive() == b"hello "  # before the server sent the rest
        gate.set()
        assert await response.receive() == b"world"
        assert await response.receive() == b""
        assert client.idle_count() == 1  # read to the end: back in the pool
        assert await (await client.get("/next")).read() == b"again"
        assert server.connections == 1
        await client.aclose()


async def test_a_response_received_to_its_end_is_pooled_when_closed_unread() -> None:
    async with RawServer(Act([CHUNKED + chunk(b"data: last\n\n") + LAST]), Act([ok(b"again")])) as (
        server
    ):
        client = HttpClient(server.url)
        response = await client.get("/stream")
        assert await response.receive() == b"data: last\n\n"
        for _ in range(100):  # the end of the body arrives in the same or the next packet
            if response._conn is None or response._conn.complete:
                break
            await asyncio.sleep(0.01)
        response.close()  # the reader stopped at its last event: nothing was left to read
        assert client.idle_count() == 1
        assert await (await client.get("/next")).read() == b"again"
        assert server.connections == 1
        await client.aclose()


async def test_requests_over_a_unix_socket(tmp_path) -> None:
    path = str(tmp_path / "upstream.sock")
    async with RawServer(Act([ok(b"one")]), Act([ok(b"two")]), uds=path) as server:
        client = HttpClient("http://llama", uds=path)
        written = asyncio.Event()
        response = await client.request("POST", "/completion", body=b"{}", on_written=written.set)
        assert written.is_set()
        assert await response.read() == b"one"
        assert await (await client.get("/slots")).read() == b"two"
        assert server.connections == 1  # kept alive
        assert server.heads[0].startswith("POST /completion HTTP/1.1\r\nhost: llama\r\n")
        await client.aclose()
    client = HttpClient("http://llama", uds=path)
    with pytest.raises(ConnectError, match="unix:"):
        await client.get("/health")  # nobody listens any more


async def test_close_delimited_body_and_connection_close_are_not_pooled() -> None:
    acts = [
        Act([b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"], then="close"),
        Act([ok(b"bye", "connection: close")]),
        Act([ok(b"new")]),
    ]
    async with RawServer(*acts) as server:
        client = HttpClient(server.url)
        assert await (await client.get("/a")).read() == b"until the end"
        assert client.idle_count() == 0
        assert await (await client.get("/b")).read() == b"bye"
        assert client.idle_count() == 0
        assert await (await client.get("/c")).read() == b"new"
        assert server.connections == 3
        await client.aclose()


async def test_large_body_is_read_with_flow_control() -> None:
    blob = bytes(range(256)) * 16384  # 4 MiB, past the pause threshold
    pieces = [blob[i : i + 65536] for i in range(0, len(blob), 65536)]
    act = Act([CHUNKED + b"".join(chunk(p) for p in pieces) + LAST])
    async with RawServer(act) as server:
        client = HttpClient(server.url)
        response = await client.get("/big")
        await asyncio.sleep(0.05)  # let the socket fill the buffer up to the pause threshold
        assert await response.read() == blob
        assert client.idle_count() == 1
        await client.aclose()


async def test_stale_keep_alive_connection_is_retried_once() -> None:
    acts = [Act([ok(b"one")]), Act(then="drop"), Act([ok(b"two")])]
    async with RawServer(*acts) as server:
        client = HttpClient(server.url)
        assert await (await client.get("/1")).read() == b"one"
        # the pooled connection is dropped on the next request: retried on a new connection
        assert await (await client.get("/2")).read() == b"two"
        assert server.connections == 2
        assert len(server.heads) == 3
        await client.aclose()


async def test_fresh_connection_dropped_is_not_retried() -> None:
    async with RawServer(Act(then="drop"), Act([ok(b"unused")])) as server:
        client = HttpClient(server.url)
        with pytest.raises(RemoteDisconnected, match="before responding"):
            await client.get("/")
        assert len(server.heads) == 1
        await client.aclose()


async def test_pool_keeps_at_most_max_idle_connections() -> None:
    gate = asyncio.Event()
    acts = [Act([CHUNKED + chunk(b"x"), LAST], gate=gate) for _ in range(4)]
    async with RawServer(*acts) as server:
        client = HttpClient(server.url, max_idle=2)
        responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(4)))
        assert server.connections == 4
        gate.set()
        assert [await r.read() for r in responses] == [b"x"] * 4
        assert client.idle_count() == 2
        await client.aclose()
        assert client.idle_count() == 0
        with pytest.raises(HttpError, match="closed"):
            await client.get("/")


async def test_keepalive_expiry_zero_never_reuses() -> None:
    async with RawServer(Act([ok(b"a")]), Act([ok(b"b")])) as server:
        client = HttpClient(server.url, keepalive_expiry=0)
        assert await (await client.get("/")).read() == b"a"
        assert await (await client.get("/")).read() == b"b"
        assert server.connections == 2
        await client.aclose()


# ---- closing early, timeouts, failures -------------------------------------------------------


async def test_closing_a_response_early_disconnects_at_once() -> None:
    act = Act([CHUNKED + chunk(b"partial")], then="hang")
    async with RawServer(act, Act([ok(b"fine")])) as server:
        client = HttpClient(server.url)
        response = await client.get("/")
        assert await response.receive() == b"partial"
        response.close()
        await asyncio.wait_for(server.left.wait(), WAIT)
        assert await response.receive() == b""  # closed: nothing more, no error
        assert client.idle_count() == 0
        assert await (await client.get("/")).read() == b"fine"
        await client.aclose()


async def test_cancelling_a_reader_disconnects_and_raises() -> None:
    act = Act([CHUNKED + chunk(b"partial")], then="hang")
    async with RawServer(act) as server:
        client = HttpClient(server.url)
        response = await client.get("/")
        await response.receive()
        reader = asyncio.create_task(response.read())
        await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await asyncio.wait_for(server.left.wait(), WAIT)
        await client.aclose()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_close_sends_fin_even_if_the_loop_then_blocks(loop: str) -> None:
    """The FIN leaves on close(), not on the loop's next turn (which may be far away)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    saw_eof = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(CHUNKED + chunk(b"x"))
            while conn.recv(65536):
                pass
            saw_eof.set()

    threading.Thread(target=serve, daemon=True).start()

    async def main() -> bool:
        client = HttpClient(f"http://127.0.0.1:{port}")
        response = await client.get("/")
        await response.receive()
        response.close()
        return saw_eof.wait(WAIT)  # blocks this loop on purpose

    try:
        run = uvloop.run if loop == "uvloop" else asyncio.run
        assert run(main())
    finally:
        listener.close()


async def test_read_timeout_while_waiting_for_headers_and_body() -> None:
    acts = [Act(then="hang"), Act([CHUNKED + chunk(b"a")], then="hang")]
    async with RawServer(*acts) as server:
        client = HttpClient(server.url, timeout=0.2)
        with pytest.raises(ReadTimeout):
            await client.get("/")
        await asyncio.wait_for(server.left.wait(), WAIT)
        server.left.clear()
        response = await client.get("/")
        assert await response.receive() == b"a"
        with pytest.raises(ReadTimeout):
            await response.receive()
        await asyncio.wait_for(server.left.wait(), WAIT)
        await client.aclose()


async def test_a_slow_but_steady_body_never_times_out() -> None:
    """The read timeout bounds each wait, not the whole body (its one timer re-arms)."""
    gate = asyncio.Event()
    parts = [CHUNKED] + [chunk(b"x")] * 6 + [LAST]
    async with RawServer(Act(parts, gate=gate)) as server:
        client = HttpClient(server.url, timeout=0.3)
        response = await client.get("/")

        async def drip() -> None:
            for _ in parts:
                await asyncio.sleep(0.15)  # 1 s in all, every wait well under the timeout
                gate.set()
                await asyncio.sleep(0)
                gate.clear()

        dripping = asyncio.create_task(drip())
        assert await response.read() == b"x" * 6
        await dripping
        await client.aclose()


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        HttpClient("http://127.0.0.1/", headers={"authorization": "Bearer k\r\nx-evil: 1"})


async def test_refused_connection_is_a_connect_error() -> None:
    client = HttpClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectError, match="cannot connect to http://127.0.0.1"):
        await client.get("/")
    with pytest.raises(HttpError, match="unsupported URL"):
        await client.get("ftp://example.invalid/")


async def test_tls_handshake_that_never_ends_is_a_connect_timeout() -> None:
    async with RawServer(Act(then="hang")) as server:  # accepts, then says nothing
        client = HttpClient(server.url.replace("http://", "https://"), connect_timeout=0.2)
        with pytest.raises(ConnectTimeout, match="timed out"):
            await client.get("/")


async def test_garbage_is_a_protocol_error() -> None:
    async with RawServer(Act([b"SMTP ready\r\n\r\n"], then="hang")) as server:
        client = HttpClient(server.url)
        with pytest.raises(ProtocolError, match="invalid HTTP response"):
            await client.get("/")
        await client.aclose()


async def test_drop_mid_body_is_remote_disconnected() -> None:
    act = Act([b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a part"], then="close")
    async with RawServer(act) as server:
        client = HttpClient(server.url)
        response = await client.get("/")
        with pytest.raises(RemoteDisconnected, match="mid-response"):
            await response.read()
        assert client.idle_count() == 0
        await client.aclose()


# ---- TLS ---------------------------------------------------------------------------------------


async def test_tls_request_stream_and_early_close(tls_stub) -> None:
    url, stub, cert = tls_stub
    client = HttpClient(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
    models = await (await client.get("models")).json()
    assert [m["id"] for m in models["data"]] == ["stub-model", "stub-model-2"]
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    response = await client.request("POST", "chat/completions", json_body=body)
    text = (await response.read()).decode()
    assert text.endswith("data: [DONE]\n\n") and '"content": "Echo: "' in text
    assert client.idle_count() == 1
    body["messages"][0]["content"] = "one two three [[slow:0.3]]"
    response = await client.request("POST", "chat/completions", json_body=body)
    assert await response.receive()
    closed_at = time.monotonic()
    response.close()
    assert await asyncio.to_thread(stub.wait_disconnect, WAIT, closed_at) is not None
    await client.aclose()


async def test_tls_with_an_untrusted_certificate_is_a_connect_error(tls_stub) -> None:
    client = HttpClient(tls_stub[0])  # the default context: system CAs only
    with pytest.raises(ConnectError, match="TLS handshake .* failed"):
        await client.get("models")


# ---- the openai provider's non-stream path ---------------------------------------------------


COMPLETION = {"choices": [{"message": {"content": "done"}, "finish_reason": "stop"}]}


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


async def test_non_stream_yields_the_same_events(openai_stub) -> None:
    provider = OpenAIProvider(openai_stub.url, "sk-test")
    try:
        events = [e async for e in provider.stream_chat(user("hello there"), "m", None, NON_STREAM)]
        sent = openai_stub.requests[-1]
        assert sent["stream"] is False and "stream_options" not in sent
        assert [type(e) for e in events] == [TextDelta, Usage, Finish]
        assert events[0].text == "Echo: hello there"
        assert events[1].prompt_tokens > 0 and events[1].completion_tokens > 0
        assert events[2].reason == "stop"
        streamed = await collect(provider.stream_chat(user("hello there"), "m"))
        assert openai_stub.requests[-1]["stream"] is True
        assert streamed.message.text() == events[0].text
        length = await collect(provider.stream_chat(user("x [[length]]"), "m", None, NON_STREAM))
        assert length.finish_reason == "length"
    finally:
        await provider.aclose()


async def test_non_stream_tool_calls(openai_stub) -> None:
    provider = OpenAIProvider(openai_stub.url)
    text = 'x [[tool:get_weather {"city": "Paris"}]] [[tool:get_weather {"city": "Oslo"}]]'
    try:
        events = [e async for e in provider.stream_chat(user(text), "m", [WEATHER], NON_STREAM)]
        calls = [e for e in events if isinstance(e, ToolCallDelta)]
        assert [(c.index, c.id, c.name) for c in calls] == [
            (0, "call_0_get_weather", "get_weather"),
            (1, "call_1_get_weather", "get_weather"),
        ]
        assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
        result = await collect(provider.stream_chat(user(text), "m", [WEATHER], NON_STREAM))
        assert [c.parsed_arguments() for c in result.message.tool_calls or []] == [
            {"city": "Paris"},
            {"city": "Oslo"},
        ]
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ("[[error:429]]", ProviderError, "returned 429: stub upstream error"),
        ("a b c [[reset:1]]", ProviderError, "closed the connection mid-response"),
        ("[[hang]]", ProviderTimeoutError, "timed out"),
    ],
)
async def test_non_stream_failures_are_typed(openai_stub, text, error, needle) -> None:
    provider = OpenAIProvider(openai_stub.url, timeout=0.5)
    try:
        with pytest.raises(error, match=needle) as info:
            await collect(provider.stream_chat(user(text), "m", None, NON_STREAM))
        assert info.value.provider == "openai"
        assert info.value.status == (504 if error is ProviderTimeoutError else 502)
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"choices": []}', b'{"choices": [{"message": "text"}]}'],
    ids=["not-json", "no-choices", "bad-message"],
)
async def test_non_stream_invalid_completion_is_a_provider_error(body: bytes) -> None:
    async with RawServer(Act([ok(body, "content-type: application/json")])) as server:
        provider = OpenAIProvider(server.url)
        try:
            with pytest.raises(ProviderError, match="invalid data"):
                await collect(provider.stream_chat(user("hi"), "m", None, NON_STREAM))
        finally:
            await provider.aclose()


async def test_stream_with_crlf_lines_and_split_events() -> None:
    events = [
        {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    ]
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    sse += b": comment\r\n\r\ndata: [DONE]\r\n\r\n"
    cut = len(sse) // 3  # an event split across chunks
    act = Act([CHUNKED + chunk(sse[:cut]) + chunk(sse[cut:]) + LAST])
    async with RawServer(act) as server:
        provider = OpenAIProvider(server.url)
        try:
            result = await collect(provider.stream_chat(user("hi"), "m"))
            assert result.message.text() == "Hello"
            assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 2)
        finally:
            await provider.aclose()


# ---- the /v1 edge asks for a non-stream upstream call ----------------------------------------


def test_v1_non_stream_request_makes_a_non_stream_upstream_call(openai_stub, tmp_path) -> None:
    with running("chat-server", openai_stub, tmp_path) as server:
        url = server.url + "/v1/chat/completions"
        with httpx.Client(timeout=30) as client:
            body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
            reply = client.post(url, json=body)
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == "Echo: hi"
            assert openai_stub.requests[-1]["stream"] is False
            reply = client.post(url, json={**body, "stream": True})
            assert reply.status_code == 200 and "Echo: " in reply.text
            assert openai_stub.requests[-1]["stream"] is True


async def test_stream_with_invalid_json_is_a_provider_error() -> None:
    sse = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {not json\n\n'
    async with RawServer(Act([CHUNKED + chunk(sse) + LAST])) as server:
        provider = OpenAIProvider(server.url)
        try:
            with pytest.raises(ProviderError, match="invalid data"):
                await collect(provider.stream_chat(user("hi"), "m"))
        finally:
            await provider.aclose()
