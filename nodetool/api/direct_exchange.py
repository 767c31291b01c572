"""One request of the direct lane: its ASGI `receive`/`send`, written straight to the socket.

`GuardedHttpToolsProtocol` hands a hot request (`nodetool.api.direct_lane`) to a
`DirectExchange` instead of uvicorn's request-response cycle. The exchange stands in for
that cycle wherever the protocol looks at it (disconnects, timeouts, shutdown: the same
attribute names), and sends the response as uvicorn would, byte for byte: status line,
uvicorn's default headers (`server`, `date`), the app's headers, `connection: close` when the
connection will not be kept, and chunked transfer coding when no length is given. The header
block waits for the first body part, so a JSON answer is one socket write: the lane's
responses (`TaskResponse`, `EventStreamResponse`, error envelopes) send their first body part
right after their start, never waiting in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Scope
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from nodetool.api.request_layer import with_request_id

if TYPE_CHECKING:
    from nodetool.api.http_protocol import GuardedHttpToolsProtocol

_DISCONNECT = {"type": "http.disconnect"}
_DEFAULTS: list[object] = [None, b""]  # (uvicorn's default-header list, its formatted block)


class DirectExchange:
    """A hot request's state, its `receive` and its `send` (see the module docstring)."""

    __slots__ = (
        "protocol",
        "scope",
        "parts",
        "keep_alive",
        "request_id",
        "status",
        "response_started",
        "response_complete",
        "disconnected",
        "_held",
        "_chunked",
        "_remaining",
        "_waiters",
        "on_response",
    )

    def __init__(self, protocol: GuardedHttpToolsProtocol, scope: Scope, keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.parts: list[bytes] | None = []  # the request body as it arrives; None once read
        self.keep_alive = keep_alive
        self.request_id: tuple[bytes, bytes] | None = None  # the response header carrying it
        self.status = 500
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self._held: bytes | None = None
        self._chunked = False
        self._remaining = 0
        self._waiters: list[asyncio.Future[None]] = []
        self.on_response: Callable[[], None] = protocol.on_response_complete

    @property
    def message_event(self) -> DirectExchange:
        """uvicorn's protocol calls `cycle.message_event.set()` on a disconnect."""
        return self

    def set(self) -> None:
        """Wake `receive` callers waiting for the disconnect."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def body(self) -> bytes:
        parts = self.parts or ()
        self.parts = None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def receive(self) -> Message:
        if self.parts is not None:
            return {"type": "http.request", "body": self.body(), "more_body": False}
        if not (self.disconnected or self.response_complete):
            waiter = self.protocol.loop.create_future()
            self._waiters.append(waiter)
            await waiter
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        self._send(message)

    def send_now(self, message: Message) -> bool:
        """`send` without waiting (see `nodetool.api.http_writes.SEND_NOW_KEY`): False, and
        nothing sent, while the client's writes are paused."""
        if self.protocol.flow.write_paused and not self.disconnected:
            return False
        self._send(message)
        return True

    def _send(self, message: Message) -> None:
        if self.disconnected:
            return
        protocol = self.protocol
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got {kind!r}")
            self.response_started = True
            self.status = message["status"]
            self._head(message.get("headers"))
            return
        if self.response_complete or kind != "http.response.body":
            raise RuntimeError(f"Unexpected ASGI message {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        else:
            self._remaining -= len(body)
            if self._remaining < 0:
                raise RuntimeError("Response content longer than Content-Length")
            data = body
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        transport = protocol.transport
        if data:
            transport.write(data)
        if not more:
            if self._remaining:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.set()
            if not self.keep_alive:
                transport.close()
            self.on_response()

    def _head(self, headers: Any) -> None:
        protocol = self.protocol
        status = self.status
        if protocol.access_log:
            scope = self.scope
            protocol.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                status,
            )
        if self.request_id is not None:
            headers = with_request_id(headers, self.request_id)
        content = [STATUS_LINE[status], _default_block(protocol.server_state.default_headers)]
        length: int | None = None
        close = False
        for name, value in headers or ():
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and length is None and not self._chunked:
                length = int(value.decode())
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._chunked = True
            elif name == b"connection" and b"close" in (
                t.lower().strip() for t in value.split(b",")
            ):
                self.keep_alive = False
                close = True
            content.append(b"%b: %b\r\n" % (name, value))
        if not self.keep_alive and not close:
            content.append(b"connection: close\r\n")
        if length is None and not self._chunked and status not in (204, 304):
            self._chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        self._remaining = 0 if self._chunked or length is None else length
        content.append(b"\r\n")
        self._held = b"".join(content)


def _default_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (`date` is renewed every second, as a new list), formatted
    once per list."""
    cached = _DEFAULTS
    if cached[0] is not headers:
        cached[:] = [headers, b"".join(b"%b: %b\r\n" % pair for pair in headers)]
    return cached[1]  # type: ignore[return-value]
