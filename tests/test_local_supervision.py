"""The embedded model's child dies mid-answer under a real `nodetool serve`: the stream ends with
an error event, the server and its open sockets live on, and a new child answers next."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.chat_ws_support import ChatClient, chunks_text, of_type
from tests.support.local_model import needs_model, shared_data_dir
from tests.support.servers import CliServer

pytestmark = [pytest.mark.local_model, needs_model]
LONG = "List the numbers from one to fifty."
HI = {"model": "gemma-3-270m", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}


def model_child(server_pid: int) -> int:
    """The pid of the server's llama-server child."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == server_pid and name.startswith("llama-server"):
            return int(entry.name)
    raise AssertionError("the server has no llama-server child")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    env = {"NODETOOL_DATA_DIR": str(shared_data_dir(tmp_path_factory))}
    with CliServer("serve", env=env) as server:
        yield server


async def ask_ws(client: ChatClient, text: str) -> list[dict]:
    """One /chat turn (a generous timeout: a new child loads the model first)."""
    await client.send({"role": "user", "content": text, "model": "gemma-3-270m"})
    frames = []
    while not (frames and frames[-1].get("type") == "chunk" and frames[-1].get("done")):
        frames.append(await client.recv(timeout=120))
    return frames


async def test_sigkill_mid_stream(server: CliServer) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{server.port}/chat") as ws:
        chat = ChatClient(ws, binary=False)
        first = await ask_ws(chat, "What is the capital of France?")
        assert "Paris" in chunks_text(first)
        child = model_child(server.proc.pid)
        events: list[str] = []
        body = {
            "model": "gemma-3-270m",
            "stream": True,
            "max_tokens": 400,
            "temperature": 0,
            "messages": [{"role": "user", "content": LONG}],
        }
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if len(events) == 4:
                            os.kill(child, signal.SIGKILL)
            assert events[-1] == "[DONE]"
            error = json.loads(events[-2])["error"]
            assert "the local model process died with SIGKILL" in error["message"]
            assert len(events) < 30  # it ended at once, not after 400 tokens
            started = time.perf_counter()
            assert (await http.get("/health")).status_code == 200
            assert time.perf_counter() - started < 1.0
            # the already open /chat socket serves its next turn, from a new child
            second = await ask_ws(chat, "What is the capital of France?")
            assert chunks_text(second) and not of_type(second, "error")
            new_child = model_child(server.proc.pid)
            assert new_child != child
            reply = await http.post(
                "/v1/chat/completions",
                json={**body, "stream": False, "max_tokens": 8},
            )
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
            assert model_child(server.proc.pid) == new_child


async def test_non_stream_death_is_a_502_and_sigill_is_named(server: CliServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        warm = await http.post(
            "/v1/chat/completions",
            json={
                "model": "gemma-3-270m",
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
        assert warm.status_code == 200
        child = model_child(server.proc.pid)
        body = {
            "model": "gemma-3-270m",
            "max_tokens": 400,
            "temperature": 0,
            "messages": [{"role": "user", "content": LONG}],
        }
        import asyncio

        pending = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.5)
        os.kill(child, signal.SIGILL)
        reply = await pending
        assert reply.status_code == 502
        message = reply.json()["error"]["message"]
        assert "SIGILL (illegal instruction)" in message and "make clean install" in message


def test_child_dies_with_the_server(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {"NODETOOL_DATA_DIR": str(shared_data_dir(tmp_path_factory))}
    with CliServer("chat-server", env=env) as server:
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "gemma-3-270m",
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            timeout=60,
        )
        assert reply.status_code == 200
        child = model_child(server.proc.pid)
        server.proc.kill()  # SIGKILL: no cleanup code runs in the server
        server.proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.05)
    state = Path(f"/proc/{child}/stat")
    assert not state.exists() or ") Z" in state.read_text()  # gone (or a reaped-soon zombie)
