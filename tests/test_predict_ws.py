"""/predict WebSocket against a real editor app (uvicorn on loopback, OpenAI-compatible stub
upstream): run, disconnect and reconnect (replay then live), cancel, status, set_mode,
malformed commands (the socket survives), frames over the limit (1009)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from nodetool.api.apps import create_editor_app
from nodetool.config import Settings
from tests.support.servers import ServerThread
from tests.support.settings import stub_settings
from tests.support.workflows import EXAMPLES, GATES, gate_graph

TIMEOUT = 20.0
ENCODINGS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


def settings_for(stub_url: str, data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("workflow_files", sorted(EXAMPLES.glob("*.json")))
    return stub_settings(stub_url, data_dir, **overrides)


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    app = create_editor_app(settings_for(openai_stub.url, tmp_path_factory.mktemp("predict")))
    with ServerThread(app) as running:
        yield running


class PredictClient:
    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary

    async def send(self, frame: Any) -> None:
        if self.binary:
            await self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(frame))

    async def command(self, command: str, **data: Any) -> None:
        await self.send({"command": command, "data": data})

    async def recv(self, binary: bool | None = None) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        expect_binary = self.binary if binary is None else binary
        if expect_binary:
            assert isinstance(raw, bytes), f"expected a MessagePack frame, got {raw!r}"
            frame = msgpack.unpackb(raw, raw=False)
        else:
            assert isinstance(raw, str), f"expected a JSON frame, got {raw!r}"
            frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def until(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Frames up to and including the first of `kind` matching `match`."""
        seen = []
        while True:
            frame = await self.recv()
            seen.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return seen

    async def result(self, command: str, **data: Any) -> dict[str, Any]:
        await self.command(command, **data)
        frame = await self.recv()
        assert frame["type"] == "command_result" and frame["command"] == command, frame
        assert frame["ok"] is True
        return frame

    async def error(self, frame: Any = None, raw: bytes | str | None = None) -> dict[str, Any]:
        if raw is not None:
            await self.ws.send(raw)
        else:
            await self.send(frame)
        reply = await self.recv()
        assert reply["type"] == "error", reply
        assert reply["message"]
        return reply


@contextlib.asynccontextmanager
async def client(server: ServerThread, binary: bool = True) -> AsyncIterator[PredictClient]:
    async with connect(f"ws://127.0.0.1:{server.port}/predict", max_size=None) as ws:
        yield PredictClient(ws, binary)


def finished(frames: list[dict]) -> dict:
    return next(f for f in frames if f.get("type") == "job_update" and f["status"] == "completed")


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_run_job_streams_events_to_completion(server, binary) -> None:
    async with client(server, binary) as ws:
        reply = await ws.result("run_job", workflow_id="shipping-quote", params={"weight": 5})
        job_id = reply["job_id"]
        assert reply["workflow_id"] == "shipping-quote" and reply["status"] == "queued"
        frames = await ws.until("job_update", status="completed")
    assert [f["status"] for f in frames if f["type"] == "job_update"] == [
        "queued",
        "running",
        "completed",
    ]
    text = finished(frames)["result"]["quote"]
    assert "Parcel: 5 kg ships as a standard box, delivery in 2-3 days." in text
    assert all(f["job_id"] == job_id for f in frames)
    assert all(f["workflow_id"] == "shipping-quote" for f in frames)
    kinds = {f["type"] for f in frames}
    assert {"job_update", "node_update", "output_update"} <= kinds
    (output,) = [f for f in frames if f["type"] == "output_update"]
    assert output["output_name"] == "quote" and output["node_id"] == "out"


async def test_run_job_with_a_graph_and_an_agent(server, openai_stub) -> None:
    workflow = json.loads((EXAMPLES / "Meeting Brief.json").read_text())
    async with client(server) as ws:
        reply = await ws.result("run_job", graph=workflow["graph"], params={"notes": "a,b\n1,2"})
        assert reply["workflow_id"] is None
        frames = await ws.until("job_update", status="completed")
    report = finished(frames)["result"]["brief"]
    assert "Echo: Summarise these meeting notes" in report and "a,b\n1,2" in report
    chunks = [f for f in frames if f["type"] == "output_update" and f["output_name"] == "chunk"]
    assert len(chunks) > 1 and {f["node_id"] for f in chunks} == {"summary", "actions"}


async def test_disconnect_then_reconnect_replays_then_follows(server) -> None:
    async with client(server) as ws:
        reply = await ws.result("run_job", graph=gate_graph("reconnect"), params={"text": "hi"})
        job_id = reply["job_id"]
        before = await ws.until("node_update", node_id="g", status="running")
    # the socket is gone; the job keeps running
    async with client(server, binary=False) as ws:
        status = await ws.result("get_status", job_id=job_id)
        assert status["status"] == "running"
        resumed = await ws.result("reconnect_job", job_id=job_id)
        assert resumed["job_id"] == job_id and resumed["status"] == "running"
        replay = [await ws.recv() for _ in range(len(before))]
        assert replay == before
        GATES.setdefault("reconnect", threading.Event()).set()
        live = await ws.until("job_update", status="completed")
    assert live[-1]["result"] == {"echo": "hi"}
    assert any(f["type"] == "node_update" and f["status"] == "completed" for f in live)
    async with client(server) as ws:  # a finished job replays from the store
        await ws.result("reconnect_job", job_id=job_id)
        again = await ws.until("job_update", status="completed")
    assert again == before + live


async def test_cancel_job(server) -> None:
    async with client(server) as ws:
        job_id = (await ws.result("run_job", graph=gate_graph("cancel"), params={"text": "x"}))[
            "job_id"
        ]
        await ws.until("node_update", node_id="g", status="running")
        await ws.command("cancel_job", job_id=job_id)
        frames = []
        while not (
            any(f["type"] == "command_result" for f in frames)
            and any(f["type"] == "job_update" and f["status"] == "cancelled" for f in frames)
        ):
            frames.append(await ws.recv())
        (result,) = [f for f in frames if f["type"] == "command_result"]
        assert result == {
            "type": "command_result",
            "command": "cancel_job",
            "ok": True,
            "job_id": job_id,
            "workflow_id": None,
            "status": "cancelled",
            "error": "cancelled",
        }
        status = await ws.result("get_status", job_id=job_id)
        assert status["status"] == "cancelled"


async def test_get_status_lists_running_jobs(server) -> None:
    async with client(server) as ws:
        job_id = (await ws.result("run_job", graph=gate_graph("status"), params={"text": "s"}))[
            "job_id"
        ]
        await ws.until("node_update", node_id="g", status="running")
        listing = await ws.result("get_status")
        assert {"job_id": job_id, "workflow_id": None, "status": "running"} in listing["jobs"]
        GATES.setdefault("status", threading.Event()).set()
        await ws.until("job_update", status="completed")
        done = await ws.result("get_status", job_id=job_id)
        assert done["status"] == "completed" and done["result"] == {"echo": "s"}


async def test_malformed_frames_and_commands_keep_the_socket(server) -> None:
    async with client(server) as ws:
        bad = await ws.error(raw=b"\xc1\xff\x00")
        assert bad["code"] == "invalid_msgpack"
        ws.binary = False  # a JSON frame: replies switch to text
        not_a_map = await ws.error(raw="[1, 2]")
        assert not_a_map["code"] == "invalid_frame"
        unknown = await ws.error({"command": "fly", "data": {}})
        assert unknown["code"] == "unknown_command" and "run_job" in unknown["message"]
        missing = await ws.error({"data": {}})
        assert "needs a `command`" in missing["message"]
        no_job = await ws.error({"command": "cancel_job", "data": {}})
        assert no_job["param"] == "job_id" and no_job["command"] == "cancel_job"
        wrong_data = await ws.error({"command": "run_job", "data": "x"})
        assert wrong_data["param"] == "data"
        bad_graph = await ws.error(
            {"command": "run_job", "data": {"graph": {"nodes": [{"id": "a", "type": "no.Such"}]}}}
        )
        assert "unknown node type 'no.Such'" in bad_graph["message"]
        assert bad_graph["status"] == 400
        bad_param = await ws.error(
            {
                "command": "run_job",
                "data": {"workflow_id": "shipping-quote", "params": {"weight": "x"}},
            }
        )
        assert bad_param["message"] == "param 'weight': expected an integer, got 'x'"
        unknown_wf = await ws.error({"command": "run_job", "data": {"workflow_id": "nope"}})
        assert unknown_wf["status"] == 404
        unknown_job = await ws.error({"command": "reconnect_job", "data": {"job_id": "nope"}})
        assert unknown_job["status"] == 404 and unknown_job["job_id"] == "nope"
        bad_mode = await ws.error({"command": "set_mode", "data": {"mode": "morse"}})
        assert bad_mode["param"] == "mode"
        status = await ws.result("get_status")  # still alive
        assert isinstance(status["jobs"], list)


async def test_set_mode_pins_the_reply_encoding(server) -> None:
    async with client(server, binary=True) as ws:
        await ws.command("set_mode", mode="text")
        reply = await ws.recv(binary=False)
        assert reply == {
            "type": "command_result",
            "command": "set_mode",
            "ok": True,
            "mode": "text",
        }
        await ws.command("get_status")  # a MessagePack frame, but text was pinned
        assert (await ws.recv(binary=False))["command"] == "get_status"
        ws.binary = False
        await ws.command("set_mode", mode="binary")
        assert (await ws.recv(binary=True))["mode"] == "binary"


async def test_frames_over_the_limit_close_with_1009(openai_stub, tmp_path) -> None:
    app = create_editor_app(settings_for(openai_stub.url, tmp_path, max_frame_bytes=2048))
    with ServerThread(app) as small:
        async with client(small) as ws:
            await ws.result("get_status")
            await ws.send({"command": "get_status", "data": {"pad": "x" * 4096}})
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
