"""Part 5: SIGKILL a `nodetool serve` process while a workflow job is running, then restart it.

The job was started by a `/chat` workflow turn (an Agent node whose upstream reply is slow)
on a thread that already has a finished turn. After the kill and a restart on the same data
dir, the job must be marked failed (not stuck running), the thread's messages must be intact,
the thread must take new turns, and the SQLite database must pass an integrity check.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from websockets.sync.client import connect

from tests.reliability.support import cli_env
from tests.support.servers import CliServer

pytestmark = pytest.mark.reliability

TIMEOUT = 30.0
SLOW_PROMPT = "[[slow:0.3]] [[chunks:200]] a long answer that is still streaming"
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


class Chat:
    """A MessagePack `/chat` client over the sync websockets client."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(msgpack.packb(frame, use_bin_type=True))

    def until(self, kind: str, **match: Any) -> dict[str, Any]:
        while True:
            frame = msgpack.unpackb(self.ws.recv(timeout=TIMEOUT), raw=False)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame
            assert frame.get("type") != "error", frame

    def turn(self, content: str, **fields: Any) -> None:
        self.send({"role": "user", "content": content, **fields})
        self.until("chunk", done=True)


@contextlib.contextmanager
def chat(server: CliServer) -> Iterator[Chat]:
    with connect(f"ws://127.0.0.1:{server.port}/chat", open_timeout=TIMEOUT) as ws:
        yield Chat(ws)


def _job_status_on_disk(data_dir: Path, job_id: str) -> str:
    with contextlib.closing(sqlite3.connect(data_dir / "nodetool.db")) as db:
        (status,) = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return status


def _messages(server: CliServer, thread_id: str) -> list[tuple[str, Any]]:
    response = httpx.get(
        f"{server.url}/api/messages", params={"thread_id": thread_id}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


def _kill_during_job(server: CliServer, thread_id: str) -> str:
    """Start a slow workflow turn on the thread, wait until it streams, SIGKILL the server."""
    with chat(server) as client:
        client.send(
            {"role": "user", "content": SLOW_PROMPT, "graph": AGENT_GRAPH, "thread_id": thread_id}
        )
        running = client.until("job_update", status="running")
        client.until("output_update", output_name="chunk")  # the Agent is mid-stream
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=TIMEOUT)
    return running["job_id"]


def test_sigkill_during_a_job_leaves_it_failed_and_the_thread_intact(
    openai_stub, tmp_path, sizes, report
) -> None:
    env = cli_env(openai_stub.url, tmp_path)
    thread_id = f"crash-{uuid.uuid4().hex[:12]}"
    expected: list[tuple[str, Any]] = []
    killed_jobs: list[str] = []
    with CliServer("serve", env=env) as server:
        with chat(server) as client:
            client.turn("before the crash", thread_id=thread_id)
        expected += [("user", "before the crash"), ("assistant", "Echo: before the crash")]
        assert _messages(server, thread_id) == expected
    for round_no in range(sizes.fault_rounds):
        with CliServer("serve", env=env) as server:
            assert _messages(server, thread_id) == expected
            killed_jobs.append(_kill_during_job(server, thread_id))
            # the kill left it unfinished on disk (its writer may lag): only a restart settles it
            assert _job_status_on_disk(tmp_path, killed_jobs[-1]) in ("queued", "running")
            expected.append(("user", SLOW_PROMPT))
            report.add("crash_recovery", faults_injected=1, sigkills=1)
        with CliServer("serve", env=env) as server:
            for job_id in killed_jobs:
                job = httpx.get(f"{server.url}/api/jobs/{job_id}", timeout=TIMEOUT)
                assert job.status_code == 200, job.text
                assert job.json()["status"] == "failed", job.json()
            assert _messages(server, thread_id) == expected
            with chat(server) as client:
                client.turn(f"after restart {round_no}", thread_id=thread_id)
            expected += [
                ("user", f"after restart {round_no}"),
                ("assistant", f"Echo: after restart {round_no}"),
            ]
            assert _messages(server, thread_id) == expected
            report.add("crash_recovery", restarts=1, jobs_marked_failed=1)
    with contextlib.closing(sqlite3.connect(tmp_path / "nodetool.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    report.add("crash_recovery", messages_intact=len(expected))
