"""Helpers for the workflow attack tests: a real `nodetool serve`, jobs over REST and the
`/predict` WebSocket, and a `/health` prober measuring latency while an attack runs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.sync.client import connect

from nodetool.types.jobs import TERMINAL_JOB_STATUSES
from tests.support.servers import CliServer

TIMEOUT = 30.0
HEALTH_P99_MS = 100.0
MIN_PROBES = 150  # answers the p99 is taken over (so one hiccup of a busy machine is not it)
T = TypeVar("T")
FINISHED = TERMINAL_JOB_STATUSES


def serve_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `nodetool serve` with auth off and no model in use."""
    return {
        "NODETOOL_DATA_DIR": str(data_dir),
        "NODETOOL_CONFIG_DIR": str(data_dir / "config"),
        "AUTH_PROVIDER": "none",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "sk-unused",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_DEFAULT_MODEL": "unused",
        "NODETOOL_LOG_LEVEL": "warning",
        "NODETOOL_REDIS_URL": "",
        "NODETOOL_DATABASE_URL": "",
        **extra,
    }


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "data": data}


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> dict:
    return {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }


def one_node_graph(node_type: str, **data: Any) -> dict[str, Any]:
    """`node_type` (with `data`) feeding an output named `out`."""
    return {
        "nodes": [node("n", node_type, **data), node("o", "nodetool.output.Output", name="out")],
        "edges": [edge("n", "o", "value")],
    }


def template_graph(template: str) -> dict[str, Any]:
    return one_node_graph("nodetool.text.FormatText", template=template)


class Client:
    """Workflows and jobs of one server over REST."""

    def __init__(self, server: CliServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=TIMEOUT)

    def save(self, graph: dict[str, Any], name: str = "attack") -> httpx.Response:
        body = {"name": name, "graph": graph}
        return self.http.post("/api/workflows", json=body)

    def save_raw(self, body: str) -> httpx.Response:
        return self.http.post(
            "/api/workflows", content=body, headers={"content-type": "application/json"}
        )

    def start(self, graph: dict[str, Any], params: dict[str, Any] | None = None) -> str:
        """Store the graph as a workflow and start it; the job id."""
        saved = self.save(graph)
        assert saved.status_code == 201, saved.text
        started = self.http.post(
            f"/api/workflows/{saved.json()['id']}/run", json={"params": params or {}}
        )
        assert started.status_code == 202, started.text
        return started.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, timeout: float = TIMEOUT, status: tuple = FINISHED) -> dict:
        """Poll the job until its status is one of `status`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.job(job_id)
            if record["status"] in status:
                return record
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {record['status']} after {timeout} s")

    def run(self, graph: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.wait(self.start(graph), timeout)

    def cancel(self, job_id: str) -> dict[str, Any]:
        response = self.http.post(f"/api/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.http.close()


def reconnect(server: CliServer, job_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """`reconnect_job` on `/predict`: every frame up to the job's final `job_update`."""
    url = server.url.replace("http://", "ws://") + "/predict"
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with connect(url, open_timeout=timeout, max_size=None) as ws:
        ws.send(json.dumps({"command": "reconnect_job", "data": {"job_id": job_id}}))
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"reconnect_job did not end in {timeout} s: {frames[-3:]}"
            frame = json.loads(ws.recv(timeout=remaining))
            frames.append(frame)
            if frame.get("type") == "job_update" and frame.get("status") in FINISHED:
                return frames


PROBE_SCRIPT = """
import json, select, sys, time
import httpx
url, interval = sys.argv[1], float(sys.argv[2])
latencies, failures = [], []
with httpx.Client(timeout=5.0) as http:
    http.get(url)  # connect first: the probes measure answers, not handshakes
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], interval)[0]:
        start = time.perf_counter()
        try:
            status = http.get(url).status_code
        except httpx.HTTPError as exc:
            failures.append(repr(exc))
            continue
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            failures.append(f"status {status}")
        if len(latencies) % 10 == 0:
            print(len(latencies), flush=True)
print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
"""


class HealthProbe:
    """GETs `/health` in a loop from its own process (so the test's own work cannot delay
    the probes); latencies in milliseconds."""

    def __init__(self, url: str, interval: float = 0.01, p99_ms: float = HEALTH_P99_MS) -> None:
        self.url = url + "/health"
        self.interval = interval
        self.p99_ms = p99_ms
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.count = 0
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lines: list[str] = []

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PROBE_SCRIPT, self.url, str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline().strip() == "ready"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.append(line)
            if line.strip().isdigit():
                self.count = int(line)

    def _stop(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(30)
        if self._reader is not None:
            self._reader.join(10)
        report = json.loads(self._lines[-1])
        self.latencies, self.failures = report["latencies"], report["failures"]

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def summary(self) -> str:
        return (
            f"{len(self.latencies)} probes, median {statistics.median(self.latencies):.1f} ms, "
            f"p99 {self.p99():.1f} ms, max {max(self.latencies):.1f} ms"
        )

    @contextmanager
    def running(self, min_probes: int = MIN_PROBES) -> Iterator[HealthProbe]:
        """Probe while the block runs (and until `min_probes` answers); then check the p99."""
        self._start()
        try:
            yield self
            deadline = time.monotonic() + 10
            while self.count < min_probes and time.monotonic() < deadline:
                time.sleep(self.interval)
        finally:
            self._stop()
        self.check(min_probes)

    def during(self, attack: Callable[[], T], max_rounds: int = 30, pause: float = 0.05) -> list[T]:
        """Repeat `attack` (at most `max_rounds` times, `pause` seconds apart) until
        `MIN_PROBES` probes answered while it ran; checks the p99, returns each round's result."""
        results: list[T] = []
        self._start()
        try:
            while self.count < MIN_PROBES and len(results) < max_rounds:
                results.append(attack())
                time.sleep(pause)
        finally:
            self._stop()
        self.check(min(MIN_PROBES, 20))
        return results

    def check(self, min_probes: int) -> None:
        assert not self.failures, self.failures[:3]
        assert len(self.latencies) >= min_probes, self.summary()
        assert self.p99() < self.p99_ms, self.summary()


def sandbox_workers(server: CliServer) -> set[int]:
    """Pids of the server's sandbox worker processes (children running the worker module)."""
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.proc.pid and b"nodetool.workflows.sandbox_worker" in cmdline:
            pids.add(int(entry.name))
    return pids


def cpu_seconds(pid: int) -> float | None:
    """CPU time used by a process (None once it is gone or a zombie)."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
