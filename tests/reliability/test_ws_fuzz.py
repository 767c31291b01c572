"""Part 2: fuzz `/chat` and `/predict` with random and mutated frames, in both encodings.

Frames (tests/reliability/frames.py) are sent in batches on one long-lived socket, each batch
followed by a sentinel (`ping` on /chat, `get_status` on /predict). Every bad frame must be
answered by exactly one `error` frame, in order, before the sentinel's answer; the server must
stay up, and afterwards the same socket must still serve a normal chat turn / workflow job.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.reliability.frames import bad_chat_frames, bad_predict_frames, encode
from tests.reliability.support import running_app
from tests.support.servers import ServerThread

pytestmark = pytest.mark.reliability

TIMEOUT = 30.0
BATCH = 10
ECHO_GRAPH = {
    "nodes": [
        {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
        {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "answer"}},
    ],
    "edges": [{"source": "in", "sourceHandle": "output", "target": "out", "targetHandle": "value"}],
}


@pytest.fixture(scope="module")
def editor(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with running_app("serve", openai_stub.url, tmp_path_factory.mktemp("ws-fuzz")) as server:
        yield server


@dataclass
class Endpoint:
    path: str
    frames: Callable[[bool], Any]
    sentinel: dict[str, Any]
    is_sentinel_reply: Callable[[dict[str, Any]], bool]


CHAT = Endpoint(
    "/chat", bad_chat_frames, {"type": "ping"}, lambda frame: frame.get("type") == "pong"
)
PREDICT = Endpoint(
    "/predict",
    bad_predict_frames,
    {"command": "get_status", "data": {}},
    lambda frame: frame.get("type") == "command_result" and frame.get("command") == "get_status",
)


class FuzzSocket:
    """One socket speaking one encoding; reopened after a failed example (unread replies)."""

    def __init__(self, server: ServerThread, endpoint: Endpoint, binary: bool) -> None:
        self.url = f"ws://127.0.0.1:{server.port}{endpoint.path}"
        self.endpoint = endpoint
        self.binary = binary
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self.dirty = True
        self.frames = 0
        self.errors = 0

    def connection(self) -> ClientConnection:
        if self.dirty or self.ws is None:
            self.close()
            self.ws = self._stack.enter_context(
                connect(self.url, max_size=None, open_timeout=TIMEOUT)
            )
            self.dirty = False
        return self.ws

    def close(self) -> None:
        self._stack.close()
        self.ws = None

    def recv(self) -> dict[str, Any]:
        """The next frame, decoded; the server's heartbeat pings are skipped."""
        assert self.ws is not None
        while True:
            raw = self.ws.recv(timeout=TIMEOUT)
            if self.binary:
                assert isinstance(raw, bytes), f"expected a MessagePack reply, got {raw!r:.200}"
                frame = msgpack.unpackb(raw, raw=False)
            else:
                assert isinstance(raw, str), f"expected a JSON reply, got {raw!r:.200}"
                frame = json.loads(raw)
            assert isinstance(frame, dict), frame
            if self.endpoint is CHAT and frame.get("type") == "ping":
                continue
            return frame

    def send(self, frame: dict[str, Any]) -> None:
        self.connection().send(encode(frame, self.binary))

    def exchange(self, batch: list[bytes | str]) -> None:
        """Send a batch of bad frames and the sentinel; check one error per frame, in order."""
        ws = self.connection()
        self.dirty = True  # until every reply has been read
        for raw in batch:
            ws.send(raw)
        ws.send(encode(self.endpoint.sentinel, self.binary))
        for raw in batch:
            reply = self.recv()
            assert reply.get("type") == "error", f"frame {raw!r:.200} got {reply!r:.300}"
            message = reply.get("message")
            assert isinstance(message, str) and message, reply
            assert not message.startswith("internal error"), f"{raw!r:.200} -> {reply!r:.300}"
            self.errors += 1
        reply = self.recv()
        assert self.endpoint.is_sentinel_reply(reply), f"expected the sentinel's reply: {reply!r}"
        self.frames += len(batch)
        self.dirty = False


def _fuzz(sock: FuzzSocket, n_frames: int) -> None:
    """Run Hypothesis rounds until at least `n_frames` frames were answered."""

    @given(batch=st.lists(sock.endpoint.frames(sock.binary), min_size=1, max_size=BATCH))
    @settings(
        max_examples=max(1, n_frames // BATCH),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(batch: list[bytes | str]) -> None:
        sock.exchange(batch)

    for _ in range(20):
        if sock.frames >= n_frames:
            return
        check()


def _normal_chat_turn(sock: FuzzSocket) -> None:
    sock.send({"role": "user", "content": "after the fuzz"})
    frames = []
    while True:
        frame = sock.recv()
        frames.append(frame)
        if frame.get("type") == "chunk" and frame.get("done"):
            break
    assert [f for f in frames if f.get("type") == "error"] == []
    text = "".join(f["content"] for f in frames if f.get("type") == "chunk" and not f["done"])
    assert text == "Echo: after the fuzz"


def _normal_job(sock: FuzzSocket) -> None:
    sock.send({"command": "run_job", "data": {"graph": ECHO_GRAPH, "params": {"text": "ok"}}})
    reply = sock.recv()
    assert reply["type"] == "command_result" and reply["ok"] is True, reply
    while True:
        frame = sock.recv()
        assert frame.get("type") != "error", frame
        if frame.get("type") == "job_update" and frame["status"] in ("completed", "failed"):
            break
    assert frame["status"] == "completed", frame
    assert frame["result"] == {"answer": "ok"}


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
@pytest.mark.parametrize("endpoint", [CHAT, PREDICT], ids=["chat", "predict"])
def test_bad_frames_get_error_frames_and_the_socket_keeps_serving(
    editor, sizes, report, endpoint: Endpoint, binary: bool
) -> None:
    sock = FuzzSocket(editor, endpoint, binary)
    try:
        _fuzz(sock, sizes.ws_frames)
        assert editor.thread.is_alive(), "the server thread died"
        sock.connection()
        assert sock.frames >= sizes.ws_frames
        if endpoint is CHAT:
            _normal_chat_turn(sock)
        else:
            _normal_job(sock)
    finally:
        sock.close()
        report.add(
            "ws_fuzz",
            frames_fuzzed=sock.frames,
            error_replies=sock.errors,
            **{f"frames_{endpoint.path.strip('/')}_{'msgpack' if binary else 'json'}": sock.frames},
        )
