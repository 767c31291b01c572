"""A small async HTTP/1.1 client for upstream providers: keep-alive pool, httptools parsing.

Built for the gateway's hot path (one JSON request, a JSON or streamed body back) on asyncio
protocols, without per-chunk stream machinery:

- one pool of idle keep-alive connections per (scheme, host, port), at most `max_idle` each,
  reused most-recently-used first and dropped after `keepalive_expiry` seconds idle;
- TLS for `https` with `ssl.create_default_context()` (or the given context);
- responses framed by Content-Length, chunked transfer coding, or the connection's end;
  `Accept-Encoding: identity` is always sent (no compression support);
- a connect timeout, and a read timeout for every wait on the upstream (headers or body);
- a connection goes back to the pool only once its response was read to the end and both sides
  allow keep-alive; closing a response early aborts its connection at once, so the upstream sees
  the disconnect immediately;
- a request on a reused connection that the server had closed meanwhile (no byte of a response
  received) is retried once on a new connection.

Not supported: proxies (`HTTP(S)_PROXY` are ignored), HTTP/2, redirects, cookies, 1xx answers,
HEAD requests.
Failures raise HttpError subclasses: ConnectError, ConnectTimeout/ReadTimeout (HttpTimeout),
RemoteDisconnected, ProtocolError.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

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


class RemoteDisconnected(HttpError):
    """The upstream closed or reset the connection before the response was complete."""


class ProtocolError(HttpError):
    """The upstream sent something that is not a valid HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; parses one response at a time into a queue of body pieces."""

    def __init__(self, origin: Origin, read_timeout: float) -> None:
        self.origin = origin
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)

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
            _shutdown(transport)
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
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self.read_timeout, self._expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
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


def _shutdown(transport: asyncio.Transport) -> None:
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


class Response:
    """A response whose headers have arrived; read its body once, or close it."""

    __slots__ = ("status", "reason", "headers", "_conn", "_client")

    def __init__(self, conn: _Connection, client: HttpClient) -> None:
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = conn.headers
        self._conn: _Connection | None = conn
        self._client = client

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for header, value in self.headers:
            if header == key:
                return value.decode("latin-1")
        return None

    async def receive(self) -> bytes:
        """The next piece of the body (whatever arrived since the last call); b"" at the end."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            piece = await conn.next_piece()
        except BaseException:
            self.close()
            raise
        if not piece:
            self._conn = None
            self._client._release(conn)
        return piece

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while piece := await self.receive():
            yield piece

    async def read(self) -> bytes:
        """The whole (remaining) body."""
        parts = []
        while piece := await self.receive():
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def json(self) -> Any:
        return json.loads(await self.read())

    def close(self) -> None:
        """Drop an unfinished response: its connection is aborted at once (never reused)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
            self._client._active.discard(conn)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """Requests against `base_url` (relative paths) or absolute URLs, over pooled connections."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_idle: int = 256,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "nodetool",
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._default = {"user-agent": user_agent, "accept-encoding": "identity"}
        self._default.update({k.lower(): v for k, v in (headers or {}).items()})
        for name, value in self._default.items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"HTTP header {name!r} contains a line break or NUL")
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._active: set[_Connection] = set()
        self._heads: dict[Origin, str] = {}
        self._targets: dict[str, tuple[Origin, str]] = {}
        self._closed = False

    # ---- requests --------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a request; returns once the response's headers arrived (read or close it)."""
        if self._closed:
            raise HttpError("the HTTP client is closed")
        origin, target = self._target(url)
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        head = f"{method} {target} HTTP/1.1\r\n{self._head(origin)}"
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"content-length: {len(body or b'')}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        fresh = False
        while True:
            conn = None if fresh else self._take_idle(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            self._active.add(conn)
            try:
                conn.send(data)
                await conn.wait_headers()
            except RemoteDisconnected:
                self._drop(conn)
                if reused and not conn.received:  # a stale keep-alive connection: once more
                    fresh = True
                    continue
                raise
            except BaseException:
                self._drop(conn)
                raise
            return Response(conn, self)

    async def post(self, url: str, body: bytes, content_type: str = "application/json") -> Response:
        return await self.request("POST", url, body=body, headers={"content-type": content_type})

    async def get(self, url: str) -> Response:
        return await self.request("GET", url)

    # ---- pool ------------------------------------------------------------------------------
    def _target(self, url: str) -> tuple[Origin, str]:
        known = self._targets.get(url)
        if known is not None:
            return known
        full = url if "://" in url else self.base_url + url
        parts = urlsplit(full)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"unsupported URL: {full!r} (http:// or https:// only)")
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        result = ((scheme, parts.hostname, port), target)
        if len(self._targets) < 1024:
            self._targets[url] = result
        return result

    def _head(self, origin: Origin) -> str:
        head = self._heads.get(origin)
        if head is None:
            scheme, host, port = origin
            shown = f"[{host}]" if ":" in host else host
            if port != (443 if scheme == "https" else 80):
                shown += f":{port}"
            lines = [f"host: {shown}"] + [f"{k}: {v}" for k, v in self._default.items()]
            head = self._heads[origin] = "\r\n".join(lines) + "\r\n"
        return head

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since < self.keepalive_expiry:
                return conn
            conn.abort()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        where = f"{scheme}://{host}:{port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin, self.timeout),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
        except TimeoutError:
            raise ConnectTimeout(
                f"connecting to {where} timed out after {self.connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from exc
        return conn

    def _release(self, conn: _Connection) -> None:
        """A response was read to its end: pool the connection if it may be reused."""
        self._active.discard(conn)
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = deque()
        if conn.keep_alive and conn.usable and not self._closed and len(idle) < self.max_idle:
            conn._parser = None
            conn.idle_since = asyncio.get_running_loop().time()
            idle.append(conn)
        else:
            conn.abort()

    def _drop(self, conn: _Connection) -> None:
        self._active.discard(conn)
        conn.abort()

    def idle_count(self, url: str = "") -> int:
        """Idle pooled connections to the origin of `url` (default: the base URL's)."""
        origin, _ = self._target(url)
        return sum(1 for conn in self._idle.get(origin, ()) if conn.usable)

    async def aclose(self) -> None:
        """Close every connection, idle or in use; later requests fail with HttpError."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().abort()
        for conn in list(self._active):
            conn.abort()
        self._active.clear()
