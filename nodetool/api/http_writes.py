"""The transport a response is written to: its header block goes out with its first body part.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body with each `http.response.body`: two socket writes (two
syscalls) for a response whose body follows at once, as every JSON answer's does.
`HeldHead` holds the response's first write until the next one, or until the end of the
current event-loop iteration if none comes in it, so the bytes on the wire and their order
are unchanged and nothing waits longer than that iteration.

A server may also put a function under `SEND_NOW_KEY` in a request's scope: it sends an ASGI
message at once and returns True, or returns False without sending while the client's writes
are paused (then the response awaits `send` as usual). The direct lane's exchange does.
"""

from __future__ import annotations

import asyncio

SEND_NOW_KEY = "nodetool.send_now"


class HeldHead:
    """Wraps one response's transport for uvicorn's request-response cycle (which only
    writes, closes and asks `is_closing`)."""

    __slots__ = ("_transport", "_loop", "_held", "_first")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # the client left meanwhile
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
