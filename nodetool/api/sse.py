"""Disconnect-aware ASGI responses: server-sent events and a one-shot JSON result.

Both run their work in the request's own task; when the client disconnects (the request's
`DisconnectSignal`, or a watcher task waiting on `receive()` under another server), the work
is cancelled at once (and with it the upstream request), and the response returns quietly.

`EventStreamResponse` waits for the stream's first event before sending headers, so a failure
that happens before any output (upstream refused, answered 4xx/5xx, timed out) still gets its
real HTTP status; if nothing arrives within the keep-alive interval, the 200 headers and a
`: keep-alive` comment go out, and again after every idle interval. A failure after the
headers is one `data: {"error": {...}}` event, then the done marker (`data: [DONE]`).
Every SSE route answers through `EventStreamResponse`; `sse_data` frames a JSON payload.
Events produced back to back (a fast upstream) are written in one batch: one send and one
syscall instead of one per event; a stream produced without waiting is sent by the request's
task itself, without a writer task. When the producer waits with events buffered, they are
written at once if the server can take them without waiting (`SEND_NOW_KEY`), else by a
writer task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from nodetool.api.asgi_json import error_parts, send_error, send_json
from nodetool.api.disconnect import SCOPE_KEY, DisconnectSignal
from nodetool.api.http_writes import SEND_NOW_KEY
from nodetool.api.json_encoding import compact_json

KEEPALIVE = b": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
MAX_BUFFER = 256  # events buffered while the client is slow before the producer waits


def sse_data(payload: Any) -> str:
    """One `data:` event of a JSON payload (compact; bytes as base64, see json_encoding)."""
    return f"data: {compact_json(payload)}\n\n"


def default_error_event(exc: BaseException) -> str:
    """The mid-stream failure event: `data: {"error": {...}}`."""
    return sse_data(error_parts(exc)[1])


class DisconnectWatch:
    """Cancels the current task when the client disconnects.

    Under nodetool's own HTTP protocol the request's `DisconnectSignal` calls back; under
    another server a small watcher task waits on `receive()` (the body must be consumed).
    A response sets `complete` before its last send: the server then reports a disconnect
    too, which must not cancel anything.
    """

    __slots__ = ("fired", "complete", "_task", "_signal", "_watcher")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.fired = False
        self.complete = False
        self._task = task
        self._signal: DisconnectSignal | None = scope.get(SCOPE_KEY)
        self._watcher: asyncio.Task[None] | None = None
        if self._signal is not None:
            self._signal.watch(self._left)
        else:
            self._watcher = task.get_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._left()

    def _left(self) -> None:
        if not self.complete:
            self.fired = True
            self._task.cancel()

    async def run(self, work: Coroutine[Any, Any, Any]) -> bool:
        """Await `work`; True when the client left and it was cancelled."""
        try:
            await work
        except asyncio.CancelledError:
            if not self.client_left():
                raise
            return True
        finally:
            self.stop()
        return False

    def client_left(self) -> bool:
        """Whether the cancellation being handled is this watch's (then it is absorbed)."""
        return self.fired and self._task.uncancel() == 0

    def stop(self) -> None:
        """Stop watching (call it once the response is done)."""
        if self._signal is not None:
            self._signal.watch(None)
        else:
            self._watcher.cancel()  # type: ignore[union-attr]


async def run_until_disconnect(
    work: Coroutine[Any, Any, Any], scope: Scope, receive: Receive
) -> bool:
    """Await `work` in this task; cancel it if the client leaves. True when it did leave."""
    return await DisconnectWatch(scope, receive).run(work)


class TaskResponse(Response):
    """Run `work` (a coroutine returning a JSON body) and send it as a 200; an exception it
    raises becomes its OpenAI envelope and status. The work is cancelled if the client leaves."""

    def __init__(self, work: Coroutine[Any, Any, bytes]) -> None:
        self.work = work
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What `DisconnectWatch.run` does, in this frame (the work is awaited in the fewest
        frames: every suspension resumes each of them)."""
        watch = DisconnectWatch(scope, receive)
        try:
            try:
                body = await self.work
            except Exception as exc:
                watch.complete = True
                await send_error(send, exc)
                return
            watch.complete = True
            await send_json(send, 200, body)
        except asyncio.CancelledError:
            if not watch.client_left():
                raise
        finally:
            watch.stop()


class EventStreamResponse(Response):
    """Stream already-encoded SSE events (str) from an async iterator."""

    def __init__(
        self,
        events: AsyncIterator[str],
        *,
        keepalive: float,
        done: str = DONE,
        error_event: Callable[[BaseException], str] = default_error_event,
    ) -> None:
        self.events = events
        self.keepalive = keepalive
        self.done = done
        self.error_event = error_event
        self.status_code = 200
        self.background = None
        self.raw_headers = list(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = DisconnectWatch(scope, receive)
        await watch.run(_Stream(self, send, watch, scope.get(SEND_NOW_KEY)).run())


class _Stream:
    """One response: the request task produces events into a buffer. Once the producer waits
    with events buffered, they are sent at once when `send_now` takes them; otherwise (or
    when the keep-alive is due, or the buffer is full) a writer task sends them. A producer
    that never waits (the whole upstream answer was already there) sends everything itself at
    the end: one send."""

    def __init__(
        self,
        response: EventStreamResponse,
        send: Send,
        watch: DisconnectWatch,
        send_now: Callable[[Message], bool] | None = None,
    ) -> None:
        self.response = response
        self.send = send
        self.send_now = send_now
        self.watch = watch
        self.buffer: list[str] = []
        self.started = False
        self.closing = False
        # made with the writer (the producer only uses them once there is one)
        self.wake: asyncio.Event = None  # type: ignore[assignment]
        self.room: asyncio.Event = None  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.writer: asyncio.Task[None] | None = None
        self.kick: asyncio.Handle | None = None  # starts the writer once the producer waits
        self.timer: asyncio.TimerHandle | None = self.loop.call_at(
            self.last + response.keepalive, self._tick
        )

    async def run(self) -> None:
        events = self.response.events
        buffer = self.buffer
        try:
            try:
                async for event in events:
                    buffer.append(event)
                    if len(buffer) == 1:  # was empty: the writer may be waiting
                        if self.writer is not None:
                            self.wake.set()
                        elif self.kick is None:
                            self.kick = self.loop.call_soon(self._flush)
                    if len(buffer) >= MAX_BUFFER:  # the client reads slowly
                        await self._wait_for_room()
                tail = self.response.done
            except Exception as exc:
                if not self.started and not buffer:
                    self._stop()
                    self.watch.complete = True
                    await send_error(self.send, exc)
                    return
                tail = self.response.error_event(exc) + self.response.done
            buffer.append(tail)
            self.closing = True
            if self.writer is None:
                self._stop()
                await self._send_buffer()
            else:
                self.wake.set()
                await self.writer
        finally:
            self._stop()
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()

    def _stop(self) -> None:
        """Cancel the writer and the pending callbacks (none is left after the last send)."""
        if self.writer is not None:
            self.writer.cancel()
        if self.kick is not None:
            self.kick.cancel()
            self.kick = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _flush(self) -> None:
        """The producer waits with events buffered: send them now if the server takes them
        without waiting, else start the writer."""
        self.kick = None  # a pending kick means no writer yet (starting one cancels it)
        if self.send_now is None or not self._sent_now():
            self._start_writer()

    def _sent_now(self) -> bool:
        send_now: Callable[[Message], bool] = self.send_now  # type: ignore[assignment]
        try:
            if not self.started:
                if not send_now(self._start_message()):
                    return False
                self.started = True
            body = "".join(self.buffer).encode()
            if not send_now({"type": "http.response.body", "body": body, "more_body": True}):
                return False
        except Exception:  # the writer sends again, and its task gets the error
            return False
        self.buffer.clear()
        self.last = self.loop.time()
        return True

    def _start_message(self) -> Message:
        return {"type": "http.response.start", "status": 200, "headers": self.response.raw_headers}

    def _start_writer(self) -> None:
        if self.kick is not None:  # called directly while the kick was pending
            self.kick.cancel()
            self.kick = None
        if self.writer is None:
            self.wake = asyncio.Event()
            self.room = asyncio.Event()
            self.writer = self.loop.create_task(self._write())

    async def _wait_for_room(self) -> None:
        self._start_writer()
        writer: asyncio.Task[None] = self.writer  # type: ignore[assignment]
        self.room.clear()
        waiter = self.loop.create_task(self.room.wait())
        try:
            await asyncio.wait((writer, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if writer.done():
            writer.result()  # the writer failed: raise its error here

    async def _start(self) -> None:
        if not self.started:
            self.started = True
            await self.send(self._start_message())

    def _tick(self) -> None:
        """The keep-alive timer, armed once per idle spell rather than per batch: it wakes the
        writer (starting it if need be) when the stream has been idle for the interval, else
        re-arms for the rest."""
        self.timer = None
        due = self.last + self.response.keepalive
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._tick)
        else:
            self._start_writer()
            self.wake.set()

    async def _send_buffer(self) -> bool:
        """Send what is buffered as one body; True when that was the last (the tail's)."""
        buffer = self.buffer
        last = self.closing  # set only after the tail is in the buffer
        body = "".join(buffer).encode()
        buffer.clear()
        if self.room is not None:
            self.room.set()
        if not self.started:
            await self._start()
        self.last = self.loop.time()
        if last:
            self.watch.complete = True
            await self.send({"type": "http.response.body", "body": body, "more_body": False})
            return True
        await self.send({"type": "http.response.body", "body": body, "more_body": True})
        return False

    async def _write(self) -> None:
        """Send what the producer buffered, in batches; keep-alives while it is idle."""
        loop, buffer, wake, send = self.loop, self.buffer, self.wake, self.send
        interval = self.response.keepalive
        try:
            while True:
                if not buffer and not wake.is_set():
                    if self.timer is None:
                        self.timer = loop.call_at(self.last + interval, self._tick)
                    await wake.wait()
                wake.clear()
                if buffer:
                    if await self._send_buffer():
                        return
                elif loop.time() - self.last >= interval:
                    await self._start()
                    self.last = loop.time()
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
