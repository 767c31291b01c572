"""A small async HTTP/1.1 client for upstream providers: keep-alive pool, httptools parsing.

Built for the gateway's hot path (one JSON request, a JSON or streamed body back) on asyncio
protocols (`nodetool.providers.http_connection`), without per-chunk stream machinery:

- at most `max_connections` connections per (scheme, host, port), idle or in use; a request
  beyond that waits (up to `timeout`) for one to come free;
- idle keep-alive connections are reused most-recently-used first and dropped after
  `keepalive_expiry` seconds idle;
- proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (`nodetool.providers.http_proxy`)
  unless `trust_env=False`;
- TLS for `https` with `ssl.create_default_context()` (or the given context);
- with `uds`, every connection goes to that Unix socket (the local model's child);
- responses framed by Content-Length, chunked transfer coding, or the connection's end;
  `Accept-Encoding: identity` is always sent (no compression support);
- a connect timeout, and a read timeout for every wait on the upstream (headers or body);
- a connection goes back to the pool only once its response was read to the end and both sides
  allow keep-alive; closing a response early aborts its connection at once, so the upstream sees
  the disconnect immediately;
- a request on a reused connection that the server had closed meanwhile (no byte of a response
  received) is retried once on a new connection.

Not supported: HTTP/2, redirects, cookies, 1xx answers, HEAD requests.
Failures raise HttpError subclasses: ConnectError, ConnectTimeout/ReadTimeout/PoolTimeout
(HttpTimeout), RemoteDisconnected, ProtocolError.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from nodetool.providers.http_connection import (
    ConnectError,
    Connection,
    ConnectionSlots,
    ConnectTimeout,
    HttpError,
    HttpTimeout,
    Origin,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
)
from nodetool.providers.http_proxy import Proxy, open_tunnel, proxy_for

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HttpClient",
    "HttpError",
    "HttpTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "RemoteDisconnected",
    "Response",
]

DEFAULT_MAX_CONNECTIONS = 256


class Response:
    """A response whose headers have arrived; read its body once, or close it."""

    __slots__ = ("status", "reason", "headers", "_conn", "_client")

    def __init__(self, conn: Connection, client: HttpClient) -> None:
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = conn.headers
        self._conn: Connection | None = conn
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
        """Done with the response. Unfinished, its connection is aborted at once (never
        reused); received to its end (read or not), the connection goes back to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.error is None:
            self._client._release(conn)
        else:
            self._client._drop(conn)

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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_idle: int | None = None,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "nodetool",
        trust_env: bool = True,
        uds: str | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_idle = max_connections if max_idle is None else max_idle
        self.trust_env = trust_env and uds is None
        self.uds = uds  # every connection goes to this Unix socket (never through a proxy)
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._default = {"user-agent": user_agent, "accept-encoding": "identity"}
        self._default.update({k.lower(): v for k, v in (headers or {}).items()})
        for name, value in self._default.items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"HTTP header {name!r} contains a line break or NUL")
        self._idle: dict[Origin, deque[Connection]] = {}
        self._active: dict[Connection, ConnectionSlots] = {}  # in use -> its origin's slots
        self._slots: dict[Origin, ConnectionSlots] = {}
        self._proxies: dict[Origin, Proxy | None] = {}
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
        on_written: Callable[[], object] | None = None,
    ) -> Response:
        """Send a request; returns once the response's headers arrived (read or close it).

        `on_written` is called once the request is handed to the socket.
        """
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
        slots = self._slots.get(origin) or self._slots.setdefault(
            origin, ConnectionSlots(self.max_connections)
        )
        fresh = False
        while True:
            if not slots.take_now():
                await self._wait_for_slot(slots, origin)
            conn = None if fresh else self._take_idle(origin)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect(origin)
                except BaseException:
                    slots.give()
                    raise
            self._active[conn] = slots
            try:
                conn.send(data)
                if on_written is not None:
                    on_written()
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

    def post(
        self, url: str, body: bytes, content_type: str = "application/json"
    ) -> Coroutine[Any, Any, Response]:
        """`request`'s coroutine itself (no frame of ours stays on the stack)."""
        return self.request("POST", url, body=body, headers={"content-type": content_type})

    def get(self, url: str) -> Coroutine[Any, Any, Response]:
        return self.request("GET", url)

    # ---- pool ------------------------------------------------------------------------------
    async def _wait_for_slot(self, slots: ConnectionSlots, origin: Origin) -> None:
        """Wait up to `timeout` for one of the origin's connection slots."""
        try:
            await slots.take(self.timeout)
        except TimeoutError:
            raise PoolTimeout(
                f"all {self.max_connections} connections to {origin[1]}:{origin[2]} "
                f"stayed busy for {self.timeout:g} s"
            ) from None
        if self._closed:
            slots.give()
            raise HttpError("the HTTP client is closed")

    def _proxy(self, origin: Origin) -> Proxy | None:
        if origin not in self._proxies:
            self._proxies[origin] = proxy_for(*origin) if self.trust_env else None
        return self._proxies[origin]

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
        origin = (scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if scheme == "http" and self._proxy(origin) is not None:  # forwarded: absolute-form
            target = f"http://{self._authority(origin)}{target}"
        result = (origin, target)
        if len(self._targets) < 1024:
            self._targets[url] = result
        return result

    def _head(self, origin: Origin) -> str:
        head = self._heads.get(origin)
        if head is None:
            lines = [f"host: {self._authority(origin)}"]
            lines += [f"{k}: {v}" for k, v in self._default.items()]
            proxy = self._proxy(origin)
            if origin[0] == "http" and proxy is not None and proxy.authorization:
                lines.append(f"proxy-authorization: {proxy.authorization}")
            head = self._heads[origin] = "\r\n".join(lines) + "\r\n"
        return head

    @staticmethod
    def _authority(origin: Origin) -> str:
        scheme, host, port = origin
        shown = f"[{host}]" if ":" in host else host
        return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        while idle:
            conn = idle.pop()
            if conn.usable and conn.idle_for() < self.keepalive_expiry:
                return conn
            conn.abort()
        return None

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        where = f"{scheme}://{host}:{port}"
        proxy = self._proxy(origin)
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.uds is not None:
                    where = f"unix:{self.uds}"
                    _, conn = await loop.create_unix_connection(
                        lambda: Connection(origin, self.timeout), self.uds
                    )
                elif proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: Connection(origin, self.timeout),
                        host,
                        port,
                        ssl=context,
                        server_hostname=host if context else None,
                    )
                elif context is None:  # plain HTTP: requests are forwarded by the proxy
                    _, conn = await loop.create_connection(
                        lambda: Connection(origin, self.timeout), proxy.host, proxy.port
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: Connection(origin, self.timeout),
                        sock=await open_tunnel(proxy, host, port),
                        ssl=context,
                        server_hostname=host,
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

    def _release(self, conn: Connection) -> None:
        """A response was read to its end: pool the connection if it may be reused."""
        self._deactivate(conn)
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = deque()
        if conn.keep_alive and conn.usable and not self._closed and len(idle) < self.max_idle:
            conn._parser = None
            conn.idle_since = conn.loop.time()  # type: ignore[union-attr]
            idle.append(conn)
        else:
            conn.abort()

    def _drop(self, conn: Connection) -> None:
        self._deactivate(conn)
        conn.abort()

    def _deactivate(self, conn: Connection) -> None:
        slots = self._active.pop(conn, None)
        if slots is not None:
            slots.give()

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
            self._drop(conn)
