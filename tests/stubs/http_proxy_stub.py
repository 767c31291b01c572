"""A tiny HTTP proxy on loopback (asyncio, in the test's loop) that records how it was used.

- `CONNECT host:port` opens a tunnel to the target (200, then bytes both ways);
- an absolute-form request (`POST http://host:port/path HTTP/1.1`) is forwarded to that
  origin: the connection is piped to it as is (HTTP/1.1 servers accept absolute-form targets);
- `refuse=407` answers every request with that status instead.

`stub.seen` lists each client connection's first request line and its `Proxy-Authorization`
value (or None); `stub.url` is the proxy's `http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class HttpProxyStub:
    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.seen: list[tuple[str, str | None]] = []
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> HttpProxyStub:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            auth = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "proxy-authorization":
                    auth = value.strip()
            self.seen.append((lines[0], auth))
            if self.refuse is not None:
                writer.write(
                    f"HTTP/1.1 {self.refuse} Refused\r\ncontent-length: 0\r\n\r\n".encode()
                )
                await writer.drain()
                return
            method, target, _ = lines[0].split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                parts = urlsplit(target)
                up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
                up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
