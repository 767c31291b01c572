"""Reliability suite helpers: real servers, task counts, process memory, the stub process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodetool.api.apps import FACTORIES
from nodetool.config import Settings
from tests.support.servers import REPO, ServerThread, free_port, wait_http

MODEL = "stub-model"
ENVELOPE_KEYS = {"message", "type", "param", "code"}


def stub_settings(stub_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an app whose default provider is the OpenAI stub at `stub_url` (…/v1)."""
    values: dict[str, Any] = {
        "openai_base_url": stub_url,
        "openai_api_key": "sk-test",
        "default_provider": "openai",
        "default_model": MODEL,
        "data_dir": data_dir,
        "config_dir": data_dir / "config",
        "auth_provider": "none",
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def running_app(
    kind: str, stub_url: str, data_dir: Path, **overrides: Any
) -> Iterator[ServerThread]:
    """The `kind` app (serve | worker | chat-server) served in a thread on a free port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    app = FACTORIES[kind](stub_settings(stub_url, data_dir, **overrides))
    with ServerThread(app) as server:
        yield server


def cli_env(stub_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `nodetool <kind>` subprocess against the stub."""
    return {
        "OPENAI_BASE_URL": stub_url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_DEFAULT_MODEL": MODEL,
        "NODETOOL_DATA_DIR": str(data_dir),
        "NODETOOL_CONFIG_DIR": str(data_dir / "config"),
        "AUTH_PROVIDER": "none",
        "NODETOOL_LOG_LEVEL": "warning",
        **extra,
    }


# ---- the server's event loop ---------------------------------------------------------------


def count_tasks(server: ServerThread) -> int:
    """Number of asyncio tasks alive in the server thread's loop (the counting task excluded)."""

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1

    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(count(), server.loop).result(timeout=10)


def settle_tasks(server: ServerThread, baseline: int, timeout: float = 15.0) -> int:
    """Wait (bounded) until the server is back to at most `baseline` tasks; the last count."""
    deadline = time.monotonic() + timeout
    current = count_tasks(server)
    while current > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
        current = count_tasks(server)
    return current


def idle_tasks(server: ServerThread, quiet: float = 0.3, timeout: float = 10.0) -> int:
    """The server's task count once it has stopped falling for `quiet` seconds."""
    best = count_tasks(server)
    deadline = time.monotonic() + timeout
    calm_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - calm_since < quiet:
        time.sleep(0.05)
        current = count_tasks(server)
        if current < best:
            best, calm_since = current, time.monotonic()
    return best


def task_names(server: ServerThread) -> list[str]:
    """Coroutine names of the server's tasks (for failure messages)."""

    async def names() -> list[str]:
        me = asyncio.current_task()
        return sorted(
            getattr(t.get_coro(), "__qualname__", repr(t))
            for t in asyncio.all_tasks()
            if t is not me
        )

    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(names(), server.loop).result(timeout=10)


# ---- processes -------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class StubProcess:
    """The OpenAI stub in its own process, so load clients and the stub do not share a GIL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.stub_process", str(self.port)],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def __enter__(self) -> StubProcess:
        wait_http(self.base + "/v1/models", timeout=30, proc=self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- wire checks ----------------------------------------------------------------------------


def envelope_problem(status: int, body: bytes | str) -> str | None:
    """None when `body` is an OpenAI error envelope; otherwise what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status}: not JSON: {body[:200]!r}"
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or set(error) != ENVELOPE_KEYS:
        return f"{status}: not an OpenAI error envelope: {payload!r:.300}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"{status}: envelope without a message: {payload!r:.300}"
    if not isinstance(error["type"], str):
        return f"{status}: envelope without a type: {payload!r:.300}"
    return None


def sse_payloads(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order (comments and blank lines skipped)."""
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
