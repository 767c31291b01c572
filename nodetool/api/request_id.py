"""`x-request-id` on every HTTP response, and in the access log line.

The client's `X-Request-Id` is echoed when it is a sane token (printable ASCII without spaces,
at most 128 characters); otherwise a new id (`req_` + 32 hex digits) is made. The id is kept
in a context variable for the request's task, so the uvicorn access log line (written while
the response starts) ends with `request_id=<id>` when uvicorn runs with `uvicorn_log_config()`
(the server commands do), and `scope["state"]["request_id"]` has it.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_SANE = re.compile(rb"^[\x21-\x7e]{1,128}$")
current_request_id: ContextVar[str | None] = ContextVar("nodetool_request_id", default=None)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == HEADER:
            return value.decode("ascii") if _SANE.match(value) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI: sets the id for the request and adds the header to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Other scopes get the inner app's awaitable: no frame of ours held per socket."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _incoming(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        header = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers") or () if h[0].lower() != HEADER]
                message["headers"] = [*headers, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


class RequestIdLogFilter(logging.Filter):
    """Sets `record.request_id` (`-` outside a request) for the access log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with ` request_id=<id>` ending each access line."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    access = config["formatters"]["access"]
    access["fmt"] = access["fmt"].rstrip() + " request_id=%(request_id)s"
    config["filters"] = {"request_id": {"()": RequestIdLogFilter}}
    config["handlers"]["access"]["filters"] = ["request_id"]
    return config


def install_request_id(app: ASGIApp) -> None:
    """Add the middleware (call it last: the outermost layer)."""
    app.add_middleware(RequestIdMiddleware)  # type: ignore[attr-defined]
