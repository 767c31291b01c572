"""Run real ASGI apps and CLI servers on loopback for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """Serve an ASGI app with uvicorn in a background thread (own event loop)."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level=config.pop("log_level", "warning"),
            lifespan=config.pop("lifespan", "on"),
            timeout_graceful_shutdown=config.pop("timeout_graceful_shutdown", 1),
            interface=config.pop("interface", "asgi3"),
            **config,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"server failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_app(app: Any, **config: Any) -> Iterator[ServerThread]:
    server = ServerThread(app, **config).start()
    try:
        yield server
    finally:
        server.stop()


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in time")


class CliServer:
    """A `nodetool <kind>` server started as a real subprocess through the CLI."""

    def __init__(self, kind: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nodetool",
                kind,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *args,
            ],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=env.get("NODETOOL_TEST_CWD", str(REPO)) if env else str(REPO),
        )

    def start(self, timeout: float = 60.0) -> CliServer:
        wait_http(self.url + "/health", timeout=timeout, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> CliServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubServer:
    """Base for the upstream stubs: an ASGI `asgi` method served on loopback, and the
    client disconnects it saw (`disconnects`, monotonic times)."""

    def __init__(self) -> None:
        self.disconnects: list[float] = []
        self._server = ServerThread(self.asgi, log_level="error", lifespan="off")

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError

    def wait_disconnect(self, timeout: float = 1.0, after: float = 0.0) -> float | None:
        """Block until a disconnect after `after` is recorded; its time, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for moment in self.disconnects:
                if moment >= after:
                    return moment
            time.sleep(0.01)
        return None

    def start(self) -> StubServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self):  # noqa: ANN204 - returns the concrete stub
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
