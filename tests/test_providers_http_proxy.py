"""The upstream client's proxies (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY, through a real
recording proxy stub on loopback) and its cap on connections per upstream (counted by the
scripted raw server)."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest

from nodetool.config import Settings
from nodetool.errors import ProviderError
from nodetool.providers.http_client import ConnectError, HttpClient, PoolTimeout
from nodetool.providers.openai_provider import OpenAIProvider
from nodetool.types.events import Finish
from nodetool.types.messages import ChatOptions, Message
from tests.stubs.http_proxy_stub import HttpProxyStub
from tests.support.collect import collect
from tests.support.raw_http import CHUNKED, Act, RawServer, chunk, ok, serve_tls_stub

tls_stub = pytest.fixture(scope="module", name="tls_stub")(serve_tls_stub)

WAIT = 5.0  # an upper bound for things that happen at once; never reached when they work
NON_STREAM = ChatOptions(stream=False)
COMPLETION = {"choices": [{"message": {"content": "done"}, "finish_reason": "stop"}]}


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


# ---- proxies -------------------------------------------------------------------------------

PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch):
    """Sets proxy variables for one test (both spellings cleared first)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


async def test_http_upstream_goes_through_http_proxy(openai_stub, proxy_env) -> None:
    async with HttpProxyStub() as proxy:
        proxy_env(HTTP_PROXY=proxy.url.replace("http://", "http://bob:s%40cret@"))
        provider = OpenAIProvider(openai_stub.url, "sk-test")
        try:
            result = await collect(provider.stream_chat(user("via proxy"), "m"))
            assert result.message.text() == "Echo: via proxy"
            events = [e async for e in provider.stream_chat(user("x"), "m", None, NON_STREAM)]
            assert isinstance(events[-1], Finish)
        finally:
            await provider.aclose()
        port = openai_stub.url.split(":")[2].split("/")[0]
        target = f"POST http://127.0.0.1:{port}/v1/chat/completions HTTP/1.1"
        assert proxy.seen[0] == (target, "Basic Ym9iOnNAY3JldA==")  # bob:s@cret


async def test_https_upstream_tunnels_through_the_proxy(tls_stub, proxy_env) -> None:
    url, _stub, cert = tls_stub
    async with HttpProxyStub() as proxy:
        proxy_env(HTTPS_PROXY=proxy.url, HTTP_PROXY="http://127.0.0.1:9")  # only https's is used
        client = HttpClient(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        models = await (await client.get("models")).json()
        assert models["data"][0]["id"] == "stub-model"
        await (await client.get("models")).read()  # the tunnelled connection is reused
        await client.aclose()
        port = url.split(":")[2].split("/")[0]
        assert proxy.seen == [(f"CONNECT 127.0.0.1:{port} HTTP/1.1", None)]


async def test_no_proxy_and_trust_env_false_connect_directly(openai_stub, proxy_env) -> None:
    async with HttpProxyStub() as proxy:
        proxy_env(HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
        provider = OpenAIProvider(openai_stub.url)
        try:
            assert (await collect(provider.stream_chat(user("a"), "m"))).message.text()
        finally:
            await provider.aclose()
        proxy_env(NO_PROXY="")
        client = HttpClient(openai_stub.url + "/", trust_env=False)
        assert (await client.get("models")).status == 200
        await client.aclose()
        assert proxy.seen == []
        client = HttpClient(openai_stub.url + "/")  # no NO_PROXY now: through the proxy
        assert (await client.get("models")).status == 200
        await client.aclose()
        assert len(proxy.seen) == 1


async def test_a_refused_tunnel_is_a_connect_error(tls_stub, proxy_env) -> None:
    async with HttpProxyStub(refuse=407) as proxy:
        proxy_env(HTTPS_PROXY=proxy.url)
        client = HttpClient(tls_stub[0])
        with pytest.raises(ConnectError, match="refused the tunnel .* 407"):
            await client.get("models")
        await client.aclose()


async def test_an_unsupported_proxy_scheme_is_an_error(openai_stub, proxy_env) -> None:
    proxy_env(HTTP_PROXY="socks5://127.0.0.1:1080")
    provider = OpenAIProvider(openai_stub.url)
    try:
        with pytest.raises(ProviderError, match="unsupported proxy URL"):
            await collect(provider.stream_chat(user("a"), "m"))
    finally:
        await provider.aclose()


# ---- the connection cap ---------------------------------------------------------------------


async def test_connections_per_upstream_never_exceed_the_cap(monkeypatch) -> None:
    monkeypatch.setenv("NODETOOL_UPSTREAM_MAX_CONNECTIONS", "3")
    answer = ok(json.dumps(COMPLETION).encode(), "content-type: application/json")
    gate = asyncio.Event()
    async with RawServer(*(Act([b"", answer], gate=gate) for _ in range(12))) as server:
        provider = OpenAIProvider.from_settings(Settings(openai_base_url=server.url))
        tasks = [
            asyncio.create_task(collect(provider.stream_chat(user("hi"), "m", None, NON_STREAM)))
            for _ in range(12)
        ]
        while len(server.heads) < 3:  # three requests reached the upstream; nine wait
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert (len(server.heads), server.open) == (3, 3)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert [r.message.text() for r in results] == ["done"] * 12
        assert (server.peak, server.connections) == (3, 3)  # the three were reused
        await provider.aclose()


async def test_waiting_for_a_connection_times_out_as_pool_timeout() -> None:
    async with RawServer(Act([CHUNKED + chunk(b"x")], then="hang"), Act([ok(b"b")])) as server:
        client = HttpClient(server.url, max_connections=1, timeout=0.3)
        first = await client.get("/")
        with pytest.raises(PoolTimeout, match="all 1 connections .* busy"):
            await client.get("/")
        first.close()  # frees the slot
        assert await (await client.get("/")).read() == b"b"
        await client.aclose()


async def test_a_request_that_stops_waiting_for_a_connection_frees_nothing() -> None:
    hold = Act([CHUNKED + chunk(b"x")], then="hang")
    async with RawServer(hold, Act([ok(b"b")])) as server:
        client = HttpClient(server.url, max_connections=1)
        first = await client.get("/")
        waiting = asyncio.create_task(client.get("/"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        first.close()  # its slot is free again: the cancelled waiter did not keep it
        assert await asyncio.wait_for((await client.get("/")).read(), WAIT) == b"b"
        assert server.peak == 1
        await client.aclose()
