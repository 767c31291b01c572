"""Part 4: load on real CLI servers (subprocesses) with the stub upstream in its own process.

1. Many concurrent streaming clients against `nodetool chat-server` for a fixed time: every
   response must be a complete, correct stream (zero errors) and the server's memory must be
   stable (RSS after the run vs. after a warm-up of the same load).
2. Many concurrent idle `/chat` sockets held by one `nodetool serve`: all stay usable; the
   memory per connection (RSS delta / sockets) is reported.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.reliability.support import (
    MODEL,
    StubProcess,
    cli_env,
    raise_fd_limit,
    rss_bytes,
    sse_payloads,
)
from tests.support.servers import CliServer

pytestmark = pytest.mark.reliability

MIB = 1024 * 1024
REQUEST_TIMEOUT = 60.0
# Stable memory: what one more run of the same load may add once warmed up.
MAX_GROWTH = 32 * MIB
MAX_BYTES_PER_SOCKET = 1 * MIB  # a sanity bound; the measured figure is reported


@pytest.fixture(scope="module")
def stub_process() -> Iterator[StubProcess]:
    with StubProcess() as stub:
        yield stub


@dataclass
class LoadStats:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    chunks: int = 0


async def _stream_once(client: httpx.AsyncClient, url: str, n: int, stats: LoadStats) -> None:
    text = f"load request {n}"
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
    }
    try:
        async with client.stream("POST", url, json=body) as response:
            raw = (await response.aread()).decode()
        if response.status_code != 200:
            stats.errors.append(f"{response.status_code}: {raw[:200]}")
            return
        payloads = sse_payloads(raw)
        if not payloads or payloads[-1] != "[DONE]":
            stats.errors.append(f"stream without [DONE]: {raw[-200:]!r}")
            return
        chunks = [json.loads(p) for p in payloads[:-1]]
        if any("error" in chunk for chunk in chunks):
            stats.errors.append(f"error event: {raw[-300:]!r}")
            return
        got = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        if got != f"Echo: load request {n}":
            stats.errors.append(f"wrong text {got!r}")
            return
        stats.ok += 1
        stats.chunks += len(chunks)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        stats.errors.append(f"{type(exc).__name__}: {exc}")


async def _load(url: str, clients: int, seconds: float) -> LoadStats:
    """`clients` concurrent clients, each on its own connection streaming one completion
    after another until the time is up.

    One httpx client per simulated client (httpx's shared pool scales poorly with hundreds of
    connections); they share one TLS context, which is costly to build and never used here.
    """
    stats = LoadStats()
    deadline = time.monotonic() + seconds
    tls = ssl.create_default_context()

    async def worker(index: int) -> None:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, verify=tls) as client:
            n = index
            while time.monotonic() < deadline:
                await _stream_once(client, url, n, stats)
                n += clients

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return stats


def test_concurrent_streaming_clients(stub_process, tmp_path, sizes, report) -> None:
    raise_fd_limit(4 * sizes.load_clients + 1024)
    env = cli_env(stub_process.url, tmp_path)
    with CliServer("chat-server", env=env) as server:
        url = server.url + "/v1/chat/completions"
        pid = server.proc.pid
        rss_start = rss_bytes(pid)
        warm = asyncio.run(_load(url, sizes.load_clients, max(1.0, sizes.load_seconds / 5)))
        rss_warm = rss_bytes(pid)
        stats = asyncio.run(_load(url, sizes.load_clients, sizes.load_seconds))
        rss_end = rss_bytes(pid)
        alive = server.proc.poll() is None
    requests = warm.ok + len(warm.errors) + stats.ok + len(stats.errors)
    report.add(
        "load_streaming",
        clients=sizes.load_clients,
        seconds=sizes.load_seconds,
        requests_sent=requests,
        completed_streams=warm.ok + stats.ok,
        streamed_chunks=warm.chunks + stats.chunks,
        requests_per_second=round(stats.ok / sizes.load_seconds, 1),
        errors_seen=len(warm.errors) + len(stats.errors),
        rss_start_mib=round(rss_start / MIB, 1),
        rss_after_warmup_mib=round(rss_warm / MIB, 1),
        rss_end_mib=round(rss_end / MIB, 1),
    )
    assert alive, "the server process died under load"
    assert warm.errors == [] and stats.errors == [], (warm.errors + stats.errors)[:10]
    assert stats.ok >= sizes.load_clients  # every client completed at least one stream
    assert rss_end - rss_warm < MAX_GROWTH, f"RSS grew {(rss_end - rss_warm) / MIB:.1f} MiB"


async def _open_socket(url: str) -> ClientConnection:
    ws = await connect(url, max_size=None, open_timeout=REQUEST_TIMEOUT, ping_interval=None)
    await ws.send(msgpack.packb({"type": "ping"}))
    reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT), raw=False)
    assert reply["type"] == "pong", reply
    return ws


async def _still_alive(ws: ClientConnection) -> bool:
    await ws.send(msgpack.packb({"type": "ping"}))
    while True:
        reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT), raw=False)
        if reply["type"] == "pong":
            return True
        if reply["type"] != "ping":  # the server's heartbeat
            return False


async def _hold_sockets(url: str, count: int, pid: int) -> tuple[int, int, int]:
    """Open `count` idle sockets; (RSS before, RSS while held, sockets still alive)."""
    warm = await _open_socket(url)
    await warm.close()
    await asyncio.sleep(0.2)  # let the server finish closing the warm-up socket
    before = rss_bytes(pid)
    sockets: list[ClientConnection] = []
    try:
        batch = 50
        for start in range(0, count, batch):
            opened = await asyncio.gather(
                *(_open_socket(url) for _ in range(min(batch, count - start)))
            )
            sockets.extend(opened)
        held = rss_bytes(pid)
        alive = sum(await asyncio.gather(*(_still_alive(ws) for ws in sockets)))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return before, held, alive


def test_idle_chat_sockets_memory_per_connection(stub_process, tmp_path, sizes, report) -> None:
    raise_fd_limit(2 * sizes.idle_sockets + 1024)
    env = cli_env(stub_process.url, tmp_path)
    with CliServer("serve", env=env) as server:
        url = f"ws://127.0.0.1:{server.port}/chat"
        before, held, alive = asyncio.run(_hold_sockets(url, sizes.idle_sockets, server.proc.pid))
        running = server.proc.poll() is None
    per_connection = (held - before) / sizes.idle_sockets
    report.add(
        "idle_sockets",
        sockets=sizes.idle_sockets,
        sockets_alive=alive,
        errors_seen=sizes.idle_sockets - alive,
        rss_before_mib=round(before / MIB, 1),
        rss_held_mib=round(held / MIB, 1),
        memory_per_connection_bytes=round(per_connection),
        memory_per_connection_kib=round(per_connection / 1024, 1),
    )
    assert running, "the server process died"
    assert alive == sizes.idle_sockets
    assert per_connection < MAX_BYTES_PER_SOCKET
