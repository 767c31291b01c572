"""One HTTP/1.1 upstream connection (an asyncio protocol parsing with httptools), the slots
that bound how many an origin has, and the errors every upstream request can fail with.

A connection parses one response at a time into a queue of body pieces, stops reading the
socket while more than 1 MiB is buffered, times out every wait after `read_timeout`, and sends
FIN at once when aborted. `nodetool.providers.http_client` pools these.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any

import httptools

Origin = tuple[str, str, int]

_HIGH_WATER = 1 << 20  # buffered body bytes at which the socket stops being read


class HttpError(Exception):
    """A request failed below HTTP: connecting, the connection, or the response's framing."""


class ConnectError(HttpError):
    """The connection (or its TLS handshake) could not be established."""


class HttpTimeout(HttpError):
    """The upstream did not answer in time."""


class ConnectTimeout(HttpTimeout):
    pass


class ReadTimeout(HttpTimeout):
    pass


class PoolTimeout(HttpTimeout):
    """Every allowed connection to the upstream stayed busy for the whole timeout."""


class RemoteDisconnected(HttpError):
    """The upstream closed or reset the connection before the response was complete."""


class ProtocolError(HttpError):
    """The upstream sent something that is not a valid HTTP/1.1 response."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; parses one response at a time into a queue of body pieces."""

    def __init__(self, origin: Origin, read_timeout: float) -> None:
        self.origin = origin
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop it was made on
        self.closed = False
        self.idle_since = 0.0
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_since = 0.0
        self._timer: asyncio.TimerHandle | None = None  # one per connection, re-armed lazily
        self._body: deque[bytes] = deque()
        # httptools calls `on_body` per body piece (each chunk of a chunked body): the deque's
        # own append, without a Python frame
        self.on_body = self._body.append
        self._buffered = 0  # bytes received since the body was last taken (framing included)
        self._paused = False
        self.received = False  # any byte of the current response
        self.headers_done = False
        self.complete = False
        self.error: HttpError | None = None
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()  # once: each lookup costs a getpid()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parser is not None and not self.complete and self.error is None:
            if exc is None and self.headers_done and self._until_close():
                self.complete = True  # a body delimited by the end of the connection
                self.keep_alive = False
            else:
                reason = f": {exc}" if exc else ""
                when = "mid-response" if self.received else "before responding"
                self.error = RemoteDisconnected(
                    f"the upstream closed the connection {when}{reason}"
                )
        self._wake()

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.complete:  # bytes nobody asked for: never reuse this one
            self.closed = True
            self.transport.abort()  # type: ignore[union-attr]
            return
        self.received = True
        self._buffered += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = ProtocolError(f"invalid HTTP response from the upstream: {exc}")
            self.closed = True
            self.transport.abort()  # type: ignore[union-attr]
        if self._buffered > _HIGH_WATER and not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    # ---- httptools callbacks -------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()

    # ---- used by the client and Response ---------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write a request and get ready to parse its response."""
        self._parser = httptools.HttpResponseParser(self)
        self._body.clear()
        self._buffered = 0
        self.received = self.headers_done = self.complete = self.keep_alive = False
        self.error = None
        self.status = 0
        self.reason = b""
        self.headers = []
        self.transport.write(data)  # type: ignore[union-attr]

    def idle_for(self) -> float:
        """Seconds since `idle_since` (a connected connection's loop time)."""
        return self.loop.time() - self.idle_since  # type: ignore[union-attr]

    @property
    def usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()  # type: ignore[union-attr]

    def abort(self) -> None:
        """Close at once; an unfinished response fails instead of looking complete."""
        self.closed = True
        if self._parser is not None and not self.complete and self.error is None:
            self.error = RemoteDisconnected("the connection was closed by this client")
        transport = self.transport
        if transport is not None and not transport.is_closing():
            shutdown(transport)
            transport.abort()
        self._wake()

    async def wait_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_piece(self) -> bytes:
        """The body bytes received so far (joined), waiting for some; b"" at the end."""
        body = self._body
        while not body:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()
        piece = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return piece

    async def _wait(self) -> None:
        """Wait for `_wake`, at most `read_timeout` s. One timer serves every wait: when it
        fires early for the current wait it re-arms itself, so a wait creates no timer."""
        loop: asyncio.AbstractEventLoop = self.loop  # type: ignore[assignment]
        waiter = self._waiter = loop.create_future()
        self._wait_since = loop.time()
        if self._timer is None:
            self._timer = loop.call_at(self._wait_since + self.read_timeout, self._expire)
        try:
            await waiter
        finally:
            self._waiter = None

    def _expire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms the timer again
        loop: asyncio.AbstractEventLoop = self.loop  # type: ignore[assignment]
        due = self._wait_since + self.read_timeout
        if loop.time() < due:
            self._timer = loop.call_at(due, self._expire)
        else:
            waiter.set_exception(ReadTimeout(f"no answer within {self.read_timeout:g} s"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _until_close(self) -> bool:
        """Whether the body is delimited by the end of the connection (no length, not chunked)."""
        for name, _value in self.headers:
            if name == b"content-length" or name == b"transfer-encoding":
                return False
        return True


def shutdown(transport: asyncio.Transport) -> None:
    """Send FIN now: transports close their socket only on the loop's next iteration."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except TypeError:  # uvloop's transport sockets refuse shutdown(); a duplicate fd does not
        try:
            with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    except OSError:
        pass


class ConnectionSlots:
    """One origin's connection slots: how many are free, and the requests waiting for one
    (first come, first served; a freed slot goes straight to the oldest waiter)."""

    __slots__ = ("free", "waiters")

    def __init__(self, count: int) -> None:
        self.free = count
        self.waiters: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as the wait ended: pass it on
            else:
                self.waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
