"""The per-request bookkeeping every HTTP request gets, as one pure ASGI layer (outermost).

- the request id (`nodetool.api.request_id`): the client's sane `X-Request-Id` or a new one,
  set for the request's task (access log), in `scope["state"]["request_id"]`, and as the
  response's `x-request-id` header;
- the request count by route template, method and final status (`nodetool.api.metrics`):
  a response that did not complete because the client went away (the app returned without
  finishing it, or the send failed) counts as 499.

One layer instead of two: one frame and one `send` wrapper per request, and no `receive`
wrapper at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from contextvars import Token

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodetool.api.metrics import CLIENT_CLOSED, ROUTE_KEY, Metrics, metrics_of
from nodetool.api.request_id import HEADER, current_request_id, incoming, new_request_id


class RequestLayer:
    """Pure ASGI: request id and request metrics for HTTP; other scopes pass straight on."""

    __slots__ = ("app", "metrics")

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Other scopes get the inner app's awaitable: no frame of ours held per socket."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        header, token = open_request(scope)
        status = 500
        complete = gone = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message["headers"] = with_request_id(message.get("headers"), header)
            elif kind == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            gone = not complete  # the app gave up on the response: its client left
        except OSError:  # the peer went away mid-send
            gone = True
            raise
        finally:
            close_request(self.metrics, scope, status, complete, gone, token)


def open_request(scope: Scope) -> tuple[tuple[bytes, bytes], Token[str | None]]:
    """Start a request's bookkeeping: its id (in the scope's state and the task's context);
    returns the response header carrying it and the context token for `close_request`."""
    request_id = incoming(scope) or new_request_id()
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state["request_id"] = request_id
    return (HEADER, request_id.encode()), current_request_id.set(request_id)


def with_request_id(
    headers: Iterable[tuple[bytes, bytes]] | None, header: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """The response's headers with the request id last (replacing any the app set)."""
    out = [h for h in headers or () if h[0].lower() != HEADER]
    out.append(header)
    return out


def close_request(
    metrics: Metrics,
    scope: Scope,
    status: int,
    complete: bool,
    gone: bool,
    token: Token[str | None],
) -> None:
    """Count the request by route, method and final status (499: its client left first)."""
    current_request_id.reset(token)
    if gone and not complete:
        status = CLIENT_CLOSED
    path = getattr(scope.get("route"), "path", None) or scope.get(ROUTE_KEY, "unmatched")
    metrics.request(path, scope["method"], status)


def install_request_layer(app: ASGIApp) -> None:
    """Add the layer (call it last: the outermost middleware); creates the app's metrics."""
    app.add_middleware(RequestLayer, metrics=metrics_of(app))  # type: ignore[attr-defined]
