"""A scripted raw HTTP/1.1 server (asyncio streams) for upstream-client tests: exact wire
shapes (Content-Length, chunked and close-delimited bodies, `Connection: close`, drops,
garbage, silence), and a module fixture serving the OpenAI stub over TLS with a throwaway
certificate made by the `openssl` CLI.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.stubs.openai_stub import OpenAIStub
from tests.support.needs import OPENSSL, missing
from tests.support.servers import ServerThread


def ok(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{head}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
LAST = b"0\r\n\r\n"


@dataclass
class Act:
    """The server's answer to one request: `parts` written in order (waiting for `gate` before
    each part after the first), then `then`: keep | close | drop (close without answering) |
    hang (wait until the client goes away)."""

    parts: list[bytes] = field(default_factory=list)
    then: str = "keep"
    gate: asyncio.Event | None = None


class RawServer:
    def __init__(self, *acts: Act, uds: str | None = None) -> None:
        self.acts = deque(acts)
        self.uds = uds  # listen on this Unix socket instead of a loopback port
        self.connections = 0
        self.open = self.peak = 0  # connections open now, and the most open at once
        self.heads: list[str] = []
        self.bodies: list[bytes] = []
        self.left = asyncio.Event()  # a client connection ended (EOF or reset)
        self.handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> RawServer:
        if self.uds is not None:
            self.server = await asyncio.start_unix_server(self._serve, self.uds)
            self.url = "http://local"
            return self
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                length = 0
                for line in head.split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                act = self.acts.popleft()
                if act.then == "drop":
                    return
                for index, part in enumerate(act.parts):
                    if index and act.gate is not None:
                        await act.gate.wait()
                    writer.write(part)
                    await writer.drain()
                if act.then == "close":
                    return
                if act.then == "hang":
                    while await reader.read(65536):
                        pass
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the test is over
        finally:
            self.open -= 1
            self.left.set()
            writer.close()


def serve_tls_stub(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, OpenAIStub, Path]]:
    """The OpenAI stub over TLS: (base URL, stub, certificate); a module fixture's body."""
    if shutil.which("openssl") is None:
        missing("the openssl CLI is not installed", OPENSSL)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=local"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    stub = OpenAIStub()
    tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    with ServerThread(stub.asgi, log_level="error", lifespan="off", **tls) as server:
        yield f"https://127.0.0.1:{server.port}/v1/", stub, cert
