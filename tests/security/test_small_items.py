"""The smaller findings: one concurrency limit for /v1, /chat turns and jobs; deeply nested
frames; clients leaving mid-body; FIFOs in the workspace; http_get's address check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgpack
import pytest

from nodetool.config import Settings
from nodetool.errors import ToolError
from nodetool.tools.base import ToolContext
from nodetool.tools.http_get import HttpGetArgs, HttpGetTool
from tests.chat_ws_support import chat_client, of_type
from tests.security.support import (
    HealthProbe,
    LoggedServer,
    cli_server,
    output_of,
    raw_socket,
    server_env,
)

LIMIT = 2
FILE_TOOLS = ["write_file", "read_file"]
HOLD = "[[slow:0.3]] [[chunks:6]] hold a slot"


def _agent_workflow(prompt: str) -> dict:
    return {
        "name": "slow agent",
        "graph": {
            "nodes": [
                {"id": "a", "type": "nodetool.agents.Agent", "data": {"prompt": prompt}},
                {"id": "o", "type": "nodetool.output.Output", "data": {"name": "answer"}},
            ],
            "edges": [
                {"source": "a", "sourceHandle": "text", "target": "o", "targetHandle": "value"}
            ],
        },
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("small-items")


@pytest.fixture(scope="module")
def server(openai_stub, home):
    env = server_env(
        openai_stub,
        home,
        NODETOOL_MAX_CONCURRENT_COMPLETIONS=str(LIMIT),
        NODETOOL_MAX_CONCURRENT_JOBS=str(LIMIT),
        NODETOOL_LOG_LEVEL="info",
    )
    with cli_server("serve", env=env) as srv:
        yield srv


# ---- one concurrency limit ----------------------------------------------------------------


async def _turn(server, outcomes: list[str]) -> None:
    async with chat_client(server, binary=False) as client:
        await client.send({"role": "user", "content": HOLD})
        first = await client.recv()
        if first["type"] == "error":
            outcomes.append(first["code"])
            return
        await client.turn()
        outcomes.append("done")


async def test_twenty_chat_turns_open_at_most_the_limit_of_upstream_streams(
    server, openai_stub
) -> None:
    openai_stub.reset()
    outcomes: list[str] = []
    with HealthProbe(server.url) as probe:
        await asyncio.gather(*(_turn(server, outcomes) for _ in range(20)))
    probe.check()
    assert outcomes.count("done") >= 1
    assert outcomes.count("overloaded") >= 20 - LIMIT
    assert openai_stub.peak <= LIMIT


def test_twenty_agent_jobs_open_at_most_the_limit_of_upstream_streams(server, openai_stub) -> None:
    """Jobs queue behind NODETOOL_MAX_CONCURRENT_JOBS: 20 agent jobs, at most LIMIT streams."""
    created = httpx.post(server.url + "/api/workflows", json=_agent_workflow(HOLD))
    assert created.status_code == 201, created.text
    run = f"{server.url}/api/workflows/{created.json()['id']}/run"
    openai_stub.reset()
    with HealthProbe(server.url) as probe, httpx.Client(timeout=10) as client:
        answers = [client.post(run, json={}) for _ in range(20)]
        assert all(a.status_code in (202, 429) for a in answers), [a.text for a in answers]
        for answer in answers:  # the accepted jobs run while the probe goes on
            if answer.status_code == 202:
                job = f"{server.url}/api/jobs/{answer.json()['id']}"
                for _ in range(600):
                    status = client.get(job).json()["status"]
                    if status in ("completed", "failed", "cancelled"):
                        break
                    threading.Event().wait(0.05)
    probe.check()
    assert openai_stub.peak <= LIMIT


# ---- deeply nested frames -----------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_deeply_nested_frames_get_an_error_frame(server, binary: bool) -> None:
    depth = 100_000 if not binary else 500
    with HealthProbe(server.url) as probe:
        async with chat_client(server, binary=binary) as client:
            while probe.wants_more():
                if binary:
                    inner: object = []
                    for _ in range(depth):
                        inner = [inner]
                    await client.send_raw(msgpack.packb({"type": "ping", "x": inner}))
                else:
                    await client.send_raw('{"x": ' + "[" * depth + "]" * depth + "}")
                error = await client.recv()
                assert error["type"] == "error"
                assert error["code"] in ("too_deep", "invalid_msgpack"), error
                await asyncio.sleep(0.01)  # a steady stream, not a CPU flood
            await client.assert_alive()
    probe.check()


# ---- clients leaving mid-body --------------------------------------------------------------


def test_clients_leaving_mid_body_log_no_traceback(openai_stub, tmp_path) -> None:
    env = server_env(openai_stub, tmp_path, NODETOOL_LOG_LEVEL="info")
    server = LoggedServer("serve", env=env).start()
    try:
        with HealthProbe(server.url) as probe:
            for path in ("/v1/chat/completions", "/api/threads", "/api/workflows") * 5:
                sock = raw_socket(server.url)
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                    + b'Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"a": 1'
                )
                threading.Event().wait(0.05)
                sock.close()
            threading.Event().wait(0.3)
        probe.check()
    finally:
        output = output_of(server)
    assert "Traceback" not in output
    assert "ClientDisconnect" not in output


# ---- FIFOs planted in the workspace ---------------------------------------------------------


async def test_write_file_to_a_fifo_fails_fast_and_wedges_nothing(server, home) -> None:
    workspace = home / "data" / "workspaces" / "1"
    workspace.mkdir(parents=True, exist_ok=True)
    fifo = workspace / "pipe"
    if not fifo.exists():
        os.mkfifo(fifo)
    write_pipe = '[[tool:write_file {"path": "pipe", "content": "x"}]] w'
    read_pipe = '[[tool:read_file {"path": "pipe"}]] r'
    with HealthProbe(server.url) as probe:
        async with chat_client(server, binary=False) as client:
            for ask in [write_pipe, read_pipe] * 6:  # more than the 8 threads that wedged before
                frames = await asyncio.wait_for(client.chat(ask, tools=FILE_TOOLS), 10)
                (result,) = of_type(frames, "tool_result")
                assert not result["ok"] and "not a regular file" in result["error"]
            frames = await client.chat(
                '[[tool:write_file {"path": "ok.txt", "content": "y"}]] ok', tools=FILE_TOOLS
            )
            (result,) = of_type(frames, "tool_result")
            assert result["ok"], result
    probe.check()
    assert (workspace / "ok.txt").read_text() == "y"


# ---- http_get: embedded IPv4 forms and one resolution ----------------------------------------


@contextlib.contextmanager
def _counting_server() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"internal secret")

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], hits
    finally:
        httpd.shutdown()


@pytest.mark.parametrize(
    "host",
    ["[64:ff9b::7f00:1]", "[::127.0.0.1]", "[::ffff:127.0.0.1]", "[2002:7f00:1::1]", "localhost"],
)
async def test_http_get_refuses_loopback_in_every_form(tmp_path, host: str) -> None:
    context = ToolContext(user_id="1", settings=Settings(data_dir=tmp_path))
    with _counting_server() as (port, hits), pytest.raises(ToolError) as refused:
        await HttpGetTool().run(context, HttpGetArgs(url=f"http://{host}:{port}/secret"))
    assert "non-public address" in refused.value.message
    assert hits == []


async def test_http_get_connects_to_the_address_it_checked(tmp_path) -> None:
    """With private addresses allowed the fetch works; the guarded path resolves once and
    connects to that very address (no second lookup an attacker's DNS could answer)."""
    from nodetool.tools.http_get import PublicOnlyBackend

    lookups: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def counting(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        lookups.append(host)
        return await real(host, *args, **kwargs)

    loop.getaddrinfo = counting  # type: ignore[method-assign]
    try:
        with pytest.raises(ToolError):
            await PublicOnlyBackend().connect_tcp("localhost", 9)
    finally:
        loop.getaddrinfo = real  # type: ignore[method-assign]
    assert lookups == ["localhost"]
    context = ToolContext(
        user_id="1", settings=Settings(data_dir=tmp_path, http_get_allow_private=True)
    )
    with _counting_server() as (port, hits):
        result = await HttpGetTool().run(context, HttpGetArgs(url=f"http://127.0.0.1:{port}/x"))
    assert result["text"] == "internal secret" and hits == ["/x"]


def test_json_bodies_nested_deeply_get_a_400(server) -> None:
    body = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for path in ("/v1/chat/completions", "/api/threads"):
        answer = httpx.post(
            server.url + path, content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, (path, answer.text[:200])
        assert json.loads(answer.text)["error"]["type"] == "invalid_request_error"
