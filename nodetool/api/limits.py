"""Admission limits as pure ASGI middleware (HTTP only).

Body size: a declared `Content-Length` over the limit is answered 413 before the body is read;
a body without one (chunked) is counted as it streams and the read fails with a 413 once it
passes the limit. Concurrency: `/v1/*` requests beyond the shared admission limit
(`nodetool/admission.py`) are answered 429 with `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodetool.admission import Admission
from nodetool.api.asgi_json import send_error
from nodetool.errors import PayloadTooLargeError


def _too_large(limit: int, size: int | None) -> PayloadTooLargeError:
    got = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLargeError(
        f"Request body too large{got}: the limit is {limit} bytes.", param=None
    )


class BodyLimitMiddleware:
    """Reject request bodies larger than `max_bytes` with a 413 OpenAI error envelope."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns the awaitable to run (a declared size in bounds keeps no frame of ours)."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size > self.max_bytes:
                    return send_error(send, _too_large(self.max_bytes, size), close=True)
                return self.app(scope, receive, send)  # the server enforces the declared size
            if name == b"transfer-encoding":
                chunked = True
        if not chunked:
            return self.app(scope, receive, send)
        return self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit, None)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except PayloadTooLargeError as exc:
            if started:
                raise
            await send_error(send, exc, close=True)


class ConcurrencyLimitMiddleware:
    """Answer 429 (`Retry-After: 1`) when the shared admission limit is reached (`/v1/*`
    requests here; `/chat` turns and jobs take slots from the same `Admission`)."""

    def __init__(self, app: ASGIApp, admission: Admission, prefix: str = "/v1/") -> None:
        self.app = app
        self.admission = admission
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if not admission.try_acquire():
            await send_error(send, admission.overloaded())
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.release()
