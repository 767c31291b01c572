"""JSON responses sent straight from raw ASGI, above all OpenAI error envelopes.

The one place a middleware (body and concurrency limits, auth, trusted hosts), a hot path or
a stream that failed before its headers answers with an error: the status, envelope and
headers of a `NodetoolError` (an unexpected exception is logged and becomes a 500), in the
same compact JSON as the app's exception handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import Send

from nodetool.api.json_encoding import compact_json
from nodetool.errors import NodetoolError

log = logging.getLogger("nodetool.api")

_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
INTERNAL = {
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
    return 500, INTERNAL, {}


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    close: bool = False,
) -> None:
    """A whole JSON response; `close` asks the client to drop the connection afterwards."""
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    if close:
        raw.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: BaseException, *, close: bool = False) -> None:
    """The exception's OpenAI error response (see `error_parts`)."""
    status, envelope, headers = error_parts(exc)
    await send_json(send, status, compact_json(envelope).encode(), headers, close=close)
