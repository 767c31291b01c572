"""Connections to configured MCP servers: lazy start, restart after death, per-call timeout.

One `McpConnection` per configured server and process. Its first use starts an owner task
that opens the `mcp` SDK client (a stdio subprocess or Streamable HTTP), lists the tools and
then holds the connection until `aclose()` or until the server goes away (its stream ends);
the next use after that starts it again. A stdio server's stderr is kept (last lines) so a
server that cannot start is described in one line, never with its traceback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from nodetool.errors import ToolError
from nodetool.tools.mcp_config import McpServerSpec, leaf, one_line

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, Tool

log = logging.getLogger("nodetool.mcp")

STDERR_LINES = 20
STOP_TIMEOUT = 10.0


class McpStartError(ToolError):
    """An MCP server could not be started or did not answer the handshake."""


class _StderrTail:
    """A pipe for a child's stderr; the last lines are kept (and logged at debug level)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb")
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), self._reader
        )
        try:
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip()
                if text:
                    self.lines.append(text)
                    log.debug("mcp server %s: %s", self.server, text)
        finally:
            transport.close()

    def last(self) -> str:
        """The last stderr line, preferring a Python exception line over traceback frames."""
        for text in reversed(self.lines):
            if not text.startswith((" ", "Traceback", "^")):
                return text
        return self.lines[-1] if self.lines else ""

    async def aclose(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), 1.0)
        self._task.cancel()


class _EndWatch:
    """Wraps a transport's read stream: sets `ended` when the server's stream ends."""

    def __init__(self, stream: Any, ended: asyncio.Event) -> None:
        self._stream = stream
        self._ended = ended

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def receive(self) -> Any:
        try:
            return await self._stream.receive()
        except BaseException:
            self._ended.set()
            raise

    def __aiter__(self) -> _EndWatch:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except BaseException:
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> _EndWatch:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        self._ended.set()
        return await self._stream.__aexit__(*exc)


class McpConnection:
    """One configured MCP server, started on first use and again after it died."""

    def __init__(
        self, name: str, spec: McpServerSpec, call_timeout: float, start_timeout: float
    ) -> None:
        self.name = name
        self.spec = spec
        self.call_timeout = spec.timeout or call_timeout
        self.start_timeout = start_timeout
        self.starts = 0  # how often the server was started (tests, diagnostics)
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[None] | None = None
        self._live: tuple[Client, list[Tool]] | None = None
        self._stop = asyncio.Event()
        self._ended = asyncio.Event()
        self._tail: _StderrTail | None = None
        self._http_error = ""  # the last HTTP error response of a URL server

    @property
    def running(self) -> bool:
        """Started, and its stream has not ended."""
        alive = self._owner is not None and not self._owner.done()
        return alive and self._live is not None and not self._ended.is_set()

    async def tools(self) -> list[Tool]:
        """The server's tools (starting it if needed)."""
        return (await self._connect())[1]

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call one tool; a server that dies meanwhile is an error (restarted on next use)."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        client, _ = await self._connect()
        try:
            # the tool registry's own timeout (call_timeout) fires first, with a clear message
            return await client.call_tool(
                tool, arguments, read_timeout_seconds=self.call_timeout + 1
            )
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:  # the owner task notices the end of the stream
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), 1.0)
            if self._ended.is_set():
                last = self._tail.last() if self._tail is not None else ""
                raise ToolError(
                    f"MCP server {self.name!r} exited during the call (it is restarted on the "
                    "next call)" + (f"; stderr: {last}" if last else "")
                ) from None
            raise ToolError(f"MCP server {self.name!r}: {exc.error.message}") from None

    async def _connect(self) -> tuple[Client, list[Tool]]:
        async with self._lock:
            if not self.running:
                await self._start()
            assert self._live is not None
            return self._live

    async def _start(self) -> None:
        if self._owner is not None:  # died: wait for its teardown to finish
            await asyncio.gather(self._owner, return_exceptions=True)
        self._stop = asyncio.Event()
        self._ended = asyncio.Event()
        ready: asyncio.Future[tuple[Client, list[Tool]]] = asyncio.Future()
        self.starts += 1
        self._owner = asyncio.ensure_future(self._own(ready))
        try:
            self._live = await asyncio.wait_for(asyncio.shield(ready), self.start_timeout)
        except TimeoutError:
            self._owner.cancel()
            raise McpStartError(
                f"MCP server {self.name!r} did not answer within {self.start_timeout:g} s"
            ) from None

    async def _own(self, ready: asyncio.Future[tuple[Client, list[Tool]]]) -> None:
        """The owner task: opens the client, publishes it, holds it until stop or death."""
        ended = self._ended
        tail = self._tail = _StderrTail(self.name) if self.spec.command else None
        try:
            async with self._client(ended, tail) as client:
                tools = await _list_all(client)
                if not ready.done():
                    ready.set_result((client, tools))
                log.info("MCP server %s started (%d tools)", self.name, len(tools))
                stop, end = (
                    asyncio.ensure_future(self._stop.wait()),
                    asyncio.ensure_future(ended.wait()),
                )
                try:
                    await asyncio.wait({stop, end}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    end.cancel()
                if ended.is_set() and not self._stop.is_set():
                    log.warning("MCP server %s went away; it is restarted on next use", self.name)
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:
            reason = await self._reason(exc, tail)
            if not ready.done():
                ready.set_exception(
                    McpStartError(f"MCP server {self.name!r} could not start: {reason}")
                )
            else:
                log.warning("MCP server %s stopped: %s", self.name, reason)
        finally:
            self._live = None
            if tail is not None:
                await tail.aclose()

    async def _reason(self, exc: BaseException, tail: _StderrTail | None) -> str:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        reason = one_line(exc)
        if isinstance(leaf(exc), MCPError) and leaf(exc).code == CONNECTION_CLOSED:  # type: ignore[attr-defined]
            reason = "the server closed the connection"
        if self._http_error:
            reason = f"{reason} ({self._http_error})"
        if tail is not None:
            await asyncio.sleep(0.05)  # let the last stderr lines arrive
            if tail.last():
                reason = f"{reason} (stderr: {tail.last()})"
        return reason

    @contextlib.asynccontextmanager
    async def _client(
        self, ended: asyncio.Event, tail: _StderrTail | None
    ) -> AsyncIterator[Client]:
        from mcp import Client

        @contextlib.asynccontextmanager
        async def transport() -> AsyncIterator[Any]:
            async with self._transport(tail) as (read, write):
                yield _EndWatch(read, ended), write

        async with Client(transport(), read_timeout_seconds=self.call_timeout) as client:
            yield client

    def _transport(self, tail: _StderrTail | None) -> Any:
        spec = self.spec
        if spec.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=spec.command, args=spec.args, env=spec.env or None, cwd=spec.cwd
            )
            assert tail is not None
            return stdio_client(params, errlog=tail.writer)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        async def remember_errors(response: Any) -> None:
            if response.status_code >= 400:
                await response.aread()
                self._http_error = f"HTTP {response.status_code}: {_brief(response.text)}"

        self._http_error = ""
        http = httpx2.AsyncClient(
            headers=spec.headers,
            timeout=httpx2.Timeout(30.0, read=self.call_timeout + 5),
            event_hooks={"response": [remember_errors]},
        )
        return _owning(http, streamable_http_client(str(spec.url), http_client=http))

    async def aclose(self) -> None:
        """Stop the server (stdio: close its stdin, then terminate it)."""
        self._stop.set()
        owner, self._owner = self._owner, None
        if owner is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(owner), STOP_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)


@contextlib.asynccontextmanager
async def _owning(http: Any, transport: Any) -> AsyncIterator[Any]:
    async with http, transport as streams:
        yield streams


def _brief(body: str) -> str:
    """An HTTP error body in one short line (the message of a JSON error envelope)."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str):
            body = message
    return " ".join(body.split())[:200]


async def _list_all(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a paginator that never ends cannot hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
