"""Part 3: upstream faults injected through the OpenAI stub, on every surface that calls it.

Faults: the upstream answers HTTP 500 (`[[error:500]]`), drops the connection mid-stream
(`[[reset:2]]`), or never answers (`[[hang]]`, with `upstream_timeout` set small). Each must
end in the right status (502/504, OpenAI envelope) or, once a stream has started, one error
event/frame and a clean end; no request may hang, and the server's event loop must come back
to the tasks it had before (no leaked task).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from websockets.sync.client import connect

from tests.reliability.support import (
    envelope_problem,
    idle_tasks,
    running_app,
    settle_tasks,
    sse_payloads,
    task_names,
)
from tests.support.servers import ServerThread

pytestmark = pytest.mark.reliability

UPSTREAM_TIMEOUT = 1.0
KEEPALIVE = 0.3  # shorter than the timeout: a hanging stream has sent its 200 headers already
CLIENT_TIMEOUT = 30.0  # far above anything expected: hitting it means a hung request
FAULT_SETTINGS = {"upstream_timeout": UPSTREAM_TIMEOUT, "keepalive_interval": KEEPALIVE}
AGENT_GRAPH = {
    "nodes": [
        {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "prompt"}},
        {"id": "agent", "type": "nodetool.agents.Agent", "data": {}},
        {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "answer"}},
    ],
    "edges": [
        {"source": "in", "sourceHandle": "output", "target": "agent", "targetHandle": "prompt"},
        {"source": "agent", "sourceHandle": "text", "target": "out", "targetHandle": "value"},
    ],
}
FAULTS = ["error500", "reset", "hang"]
DIRECTIVE = {
    "error500": "[[error:500]] upstream refuses",
    "reset": "[[reset:2]] one two three four five six",
    "hang": "[[hang]] never answers",
}


@pytest.fixture(scope="module")
def servers(openai_stub, tmp_path_factory) -> Iterator[dict[str, ServerThread]]:
    with contextlib.ExitStack() as stack:
        out = {}
        for kind in ("chat-server", "serve"):
            data_dir = tmp_path_factory.mktemp(f"faults-{kind}")
            out[kind] = stack.enter_context(
                running_app(kind, openai_stub.url, data_dir, **FAULT_SETTINGS)
            )
        yield out


@contextlib.contextmanager
def no_leaked_tasks(server: ServerThread) -> Iterator[None]:
    """The server's loop has no more tasks after the block than before it."""
    baseline = idle_tasks(server)
    yield
    after = settle_tasks(server, baseline)
    assert after <= baseline, f"{after - baseline} leaked task(s): {task_names(server)}"


def _post(server: ServerThread, text: str, stream: bool) -> httpx.Response:
    body = {
        "model": "stub-model",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:  # own connection, closed afterwards
        return client.post(server.url + "/v1/chat/completions", json=body)


STATUS = {"error500": 502, "reset": 502, "hang": 504}


def _check_http(
    fault: str, stream: bool, response: httpx.Response, openai_stub: Any, t0: float
) -> None:
    """Before any output: the fault's status and envelope. A stream whose headers went out
    already (keep-alives, deltas) ends with one error event and `[DONE]` instead."""
    if response.status_code != 200 or not stream:
        assert response.status_code == STATUS[fault], response.text
        assert envelope_problem(response.status_code, response.content) is None, response.text
        error = response.json()["error"]
    else:
        payloads = sse_payloads(response.text)
        assert payloads[-1] == "[DONE]", payloads
        assert envelope_problem(200, payloads[-2]) is None, payloads[-2]
        error = json.loads(payloads[-2])["error"]
        chunks = [json.loads(p) for p in payloads[:-2]]
        assert all("error" not in chunk for chunk in chunks)
        if fault == "reset":
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            assert text, "the deltas before the reset were relayed"
    if fault == "error500":
        assert "stub upstream error" in error["message"]  # the upstream's message
    if fault == "hang":
        assert error["code"] == "upstream_timeout", error
        # the timed-out upstream request was closed, not left hanging
        assert openai_stub.wait_disconnect(timeout=10.0, after=t0) is not None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fault", FAULTS)
def test_v1_upstream_fault(servers, openai_stub, sizes, report, fault: str, stream: bool) -> None:
    server = servers["chat-server"]
    _post(server, "warm up", stream)  # first-use allocations are not leaks
    with no_leaked_tasks(server):
        for _ in range(sizes.fault_rounds):
            t0 = time.monotonic()
            response = _post(server, DIRECTIVE[fault], stream)
            report.add("upstream_faults", faults_injected=1, requests_sent=1)
            _check_http(fault, stream, response, openai_stub, t0)
        healthy = _post(server, "healthy again", stream)
        report.add("upstream_faults", requests_sent=1)
        assert healthy.status_code == 200, healthy.text


class FrameClient:
    """A MessagePack WebSocket client for /chat and /predict (heartbeat pings skipped)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(msgpack.packb(frame, use_bin_type=True))

    def recv(self) -> dict[str, Any]:
        while True:
            frame = msgpack.unpackb(self.ws.recv(timeout=CLIENT_TIMEOUT), raw=False)
            if frame.get("type") != "ping":
                return frame

    def until(self, done: Any) -> list[dict[str, Any]]:
        frames = []
        while True:
            frames.append(self.recv())
            if done(frames[-1]):
                return frames


def _is_done(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "chunk" and frame.get("done") is True


@pytest.mark.parametrize("fault", FAULTS)
def test_chat_socket_upstream_fault(servers, openai_stub, sizes, report, fault: str) -> None:
    server = servers["serve"]
    url = f"ws://127.0.0.1:{server.port}/chat"
    with connect(url) as ws:  # warm up: thread creation, first-use allocations
        FrameClient(ws).send({"role": "user", "content": "warm up"})
        FrameClient(ws).until(_is_done)
    with no_leaked_tasks(server), connect(url) as ws:
        client = FrameClient(ws)
        for _ in range(sizes.fault_rounds):
            t0 = time.monotonic()
            client.send({"role": "user", "content": DIRECTIVE[fault]})
            frames = client.until(_is_done)
            report.add("upstream_faults", faults_injected=1, frames_sent=1)
            errors = [f for f in frames if f.get("type") == "error"]
            assert len(errors) == 1, frames
            assert [f for f in frames if _is_done(f)] == [frames[-1]]
            thread_id = frames[-1]["thread_id"]
            assert errors[0]["thread_id"] == thread_id
            if fault == "reset":
                text = "".join(f["content"] for f in frames if f.get("type") == "chunk")
                assert text, "the deltas before the reset were relayed"
            if fault == "hang":
                assert errors[0]["code"] == "upstream_timeout", errors
                assert openai_stub.wait_disconnect(timeout=10.0, after=t0) is not None
        client.send({"role": "user", "content": "healthy again"})
        frames = client.until(_is_done)
        assert [f for f in frames if f.get("type") == "error"] == []


@pytest.mark.parametrize("fault", FAULTS)
def test_workflow_job_upstream_fault(servers, sizes, report, fault: str) -> None:
    server = servers["serve"]
    url = f"ws://127.0.0.1:{server.port}/predict"
    with no_leaked_tasks(server), connect(url) as ws:
        client = FrameClient(ws)
        for _ in range(sizes.fault_rounds):
            client.send(
                {
                    "command": "run_job",
                    "data": {"graph": AGENT_GRAPH, "params": {"prompt": DIRECTIVE[fault]}},
                }
            )
            report.add("upstream_faults", faults_injected=1, frames_sent=1)
            reply = client.recv()
            assert reply["type"] == "command_result" and reply["ok"], reply
            frames = client.until(
                lambda f: (
                    f.get("type") == "job_update"
                    and f.get("status") in ("completed", "failed", "cancelled")
                )
            )
            final = frames[-1]
            assert final["status"] == "failed", frames
            assert final["job_id"] == reply["job_id"]
            assert isinstance(final.get("error"), str) and final["error"], final
        record = httpx.get(f"{server.url}/api/jobs/{reply['job_id']}", timeout=CLIENT_TIMEOUT)
        assert record.status_code == 200 and record.json()["status"] == "failed", record.text
