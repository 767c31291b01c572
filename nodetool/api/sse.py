"""Disconnect-aware ASGI responses: server-sent events and a one-shot JSON result.

Both run the work in a task and watch `receive()` for `http.disconnect` at the same time, so
the client going away cancels the work (and with it the upstream request) at once.

`EventStreamResponse` waits for the stream's first event before sending headers, so a failure
that happens before any output (routing, upstream refused or answered 4xx/5xx) still gets its
real HTTP status; if the first event takes longer than the keep-alive interval, the 200 headers
and `: keep-alive` comments go out while waiting. A failure after the headers is one
`data: {"error": {...}}` event, then the done marker (`data: [DONE]`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from nodetool.errors import NodetoolError

log = logging.getLogger("nodetool.api.sse")

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON = (b"content-type", b"application/json")
_INTERNAL = {
    "error": {
        "message": "Internal server error",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
}


def error_parts(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, OpenAI envelope, headers) for an exception; unexpected ones are logged."""
    if isinstance(exc, NodetoolError):
        return exc.status, exc.envelope(), exc.headers
    log.error("request failed", exc_info=exc)
    return 500, _INTERNAL, {}


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (the request body must already be consumed)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _settle(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has finished cleaning up."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():  # we were cancelled ourselves while waiting
            raise
    except Exception:  # already reported by the task's own handling
        pass


async def _race(work: asyncio.Task[Any], receive: Receive) -> bool:
    """Wait for `work` or the client's disconnect; True if the client left first.

    On disconnect (or when we are cancelled) `work` is cancelled and awaited.
    """
    watcher = asyncio.get_running_loop().create_task(wait_disconnect(receive))
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        watcher.cancel()
        await _settle(work)
        raise
    if work.done():
        watcher.cancel()
        return False
    await _settle(work)
    return True


class TaskResponse(Response):
    """Run `work` (a coroutine returning a JSON body) and send it as a 200; a NodetoolError it
    raises becomes its envelope and status. The work is cancelled if the client leaves."""

    def __init__(self, work: Coroutine[Any, Any, bytes]) -> None:
        self.work = work
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.get_running_loop().create_task(self.work)
        if await _race(task, receive):
            return
        try:
            body = task.result()
        except Exception as exc:
            status, envelope, headers = error_parts(exc)
            await send_json(send, status, json.dumps(envelope).encode(), headers)
            return
        await send_json(send, 200, body)


class EventStreamResponse(Response):
    """Stream already-encoded SSE events from an async iterator of str (or bytes)."""

    def __init__(
        self,
        events: AsyncIterator[str | bytes],
        *,
        keepalive: float,
        done: bytes | None = DONE,
        error_event: Any = None,
    ) -> None:
        self.events = events
        self.keepalive = keepalive
        self.done = done
        self.error_event = error_event or default_error_event
        self.status_code = 200
        self.background = None
        self.raw_headers = list(SSE_HEADERS)
        self._started = False
        self._last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.get_running_loop().create_task(self._produce(send))
        if await _race(producer, receive):
            return
        exc = producer.exception()
        if exc is not None:
            raise exc

    async def _start(self, send: Send) -> None:
        if not self._started:
            self._started = True
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

    async def _keep_alive(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self._last + self.keepalive - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self._start(send)
            self._last = loop.time()
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})

    async def _produce(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        pinger = loop.create_task(self._keep_alive(send))
        events = self.events
        tail = self.done or b""
        try:
            async for event in events:
                if not self._started:
                    await self._start(send)
                body = event.encode() if isinstance(event, str) else event
                self._last = loop.time()
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except Exception as exc:
            pinger.cancel()
            if not self._started:
                status, envelope, headers = error_parts(exc)
                await send_json(send, status, json.dumps(envelope).encode(), headers)
                return
            tail = self.error_event(exc) + tail
        finally:
            pinger.cancel()
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()
        await self._start(send)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def default_error_event(exc: BaseException) -> bytes:
    """The mid-stream failure event: `data: {"error": {...}}`."""
    _, envelope, _ = error_parts(exc)
    return b"data: " + json.dumps(envelope).encode() + b"\n\n"
