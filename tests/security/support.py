"""Helpers for the attack tests: real `nodetool` servers on loopback and a /health prober.

Every attack test runs the attack against a server started through the CLI (a separate
process, so the attacker's threads in the test process cannot slow the server down), and
checks with `HealthProbe` that `/health` keeps answering within 100 ms meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import CliServer

HEALTH_BUDGET = 0.1  # seconds: the bound for /health while an attack runs


def server_env(stub: Any, home: Path, **env: str) -> dict[str, str]:
    """Environment for a CLI server whose upstream is the OpenAI stub, files under `home`."""
    values = {
        "OPENAI_BASE_URL": stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_DEFAULT_MODEL": "stub-model",
        "NODETOOL_DATA_DIR": str(home / "data"),
        "NODETOOL_CONFIG_DIR": str(home / "config"),
        "AUTH_PROVIDER": "none",
        "NODETOOL_LOG_LEVEL": "warning",
    }
    values.update(env)
    return values


class LoggedServer(CliServer):
    """A CLI server whose output is read as it comes (a full pipe would block its logging)."""

    def start(self, timeout: float = 60.0) -> LoggedServer:
        super().start(timeout)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        """Everything the server printed on stdout and stderr (stops it first)."""
        self.stop()
        self._reader.join(10)
        return "".join(self.lines)


@contextlib.contextmanager
def cli_server(kind: str, *args: str, env: dict[str, str]) -> Iterator[LoggedServer]:
    server = LoggedServer(kind, *args, env=env).start()
    try:
        yield server
    finally:
        server.stop()


def output_of(server: LoggedServer) -> str:
    """Everything the (now stopped) server printed on stdout and stderr."""
    return server.output()


class HealthProbe:
    """Polls `/health` from a background thread on one kept-alive connection (as a real
    client would) and records each answer's latency; `fresh=True` opens a new connection
    for every probe instead."""

    def __init__(self, url: str, interval: float = 0.01, fresh: bool = False) -> None:
        self.url = url + "/health"
        self.interval = interval
        self.fresh = fresh
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = httpx.Client(timeout=5.0)
        try:
            while not self._stop.is_set():
                if self.fresh:
                    client.close()
                    client = httpx.Client(timeout=5.0)
                started = time.perf_counter()
                try:
                    response = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if not self._ready.is_set():  # warm-up probe, before the attack starts
                        self._ready.set()
                    elif response.status_code == 200:
                        self.latencies.append(time.perf_counter() - started)
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
                self._stop.wait(self.interval)
        finally:
            client.close()

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        assert self._ready.wait(10), "/health did not answer before the attack"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wants_more(self, samples: int = 100, limit: float = 20.0) -> bool:
        """True until `samples` probes were answered during the attack (at most `limit` s):
        a repeatable attack loops on this so p99 is measured over enough probes."""
        if self._deadline is None:
            self._deadline = time.monotonic() + limit
        return len(self.latencies) < samples and time.monotonic() < self._deadline

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]

    def check(self, minimum: int = 3) -> None:
        """/health answered every probe, at least `minimum` times, p99 within 100 ms."""
        assert not self.failures, f"/health failed during the attack: {self.failures[:3]}"
        assert len(self.latencies) >= minimum, (
            f"only {len(self.latencies)} /health answers {self.latencies}"
        )
        assert self.p99() < HEALTH_BUDGET, (
            f"/health p99 {self.p99() * 1000:.1f} ms over {len(self.latencies)} probes"
        )


def raw_socket(url: str, source: str | None = None) -> socket.socket:
    """A connected TCP socket to the server of `url` (optionally from a source address)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((host, int(port)))
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes (or `timeout`); the bytes received."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
