"""The OpenAI hot routes dispatched straight to their endpoints, below FastAPI's router.

`POST /v1/chat/completions`, `/v1/responses`, `/v1/completions` and `/v1/embeddings` are
plain Starlette routes (no dependencies, no response model). `HotPathMiddleware`, the
innermost of the app's middleware, calls their endpoints directly for an exact path match,
skipping the exception middleware, router matching, FastAPI's exit-stack layer and the
included routers' own matching: work done per request for nothing on these routes. The
routes stay registered, so OpenAPI documents them and any other method or path (405, 404,
a trailing slash) takes the ordinary way. Errors are rendered by the same function the app's
exception handler uses, so the wire output is unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi.routing import APIWebSocketRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from nodetool.api.errors import error_response
from nodetool.errors import NodetoolError

HOT_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings")
HOT_SOCKETS = ("/chat",)  # held for hours: every frame of the ASGI stack costs memory
Endpoint = Callable[[Request], Awaitable[Response]]
SocketEndpoint = Callable[[WebSocket], Awaitable[None]]


class HotPathMiddleware:
    """Pure ASGI: `POST` to a hot path runs its endpoint; everything else passes through."""

    __slots__ = ("app", "endpoints", "sockets")

    def __init__(
        self, app: ASGIApp, endpoints: dict[str, Endpoint], sockets: dict[str, SocketEndpoint]
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.sockets = sockets

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns the awaitable to run (no frame of its own stays on the stack)."""
        kind = scope["type"]
        if kind == "http":
            if scope["method"] == "POST":
                endpoint = self.endpoints.get(scope["path"])
                if endpoint is not None:
                    return _run(endpoint, scope, receive, send)
        elif kind == "websocket":
            socket_endpoint = self.sockets.get(scope["path"])
            if socket_endpoint is not None:
                return _run_socket(socket_endpoint, scope, receive, send)
        return self.app(scope, receive, send)


async def _run(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """What Starlette's `request_response` does, with the app's NodetoolError handler inline.

    The endpoint's own errors happen before any response starts; the responses it returns
    (`TaskResponse`, `EventStreamResponse`) turn later errors into their own error output.
    """
    try:
        response = await endpoint(Request(scope, receive, send))
    except NodetoolError as exc:
        response = error_response(exc)
    except ClientDisconnect:
        return  # the client left mid-body: nobody to answer, and not a server error
    await response(scope, receive, send)


async def _run_socket(endpoint: SocketEndpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """The WebSocket endpoint; a NodetoolError escaping it is dropped, as the app's handler
    does for WebSockets (the server then refuses or closes the socket)."""
    with contextlib.suppress(NodetoolError):
        await endpoint(WebSocket(scope, receive, send))


def _flat(routes: list[Any]) -> Iterator[Any]:
    """The routes, looking into routers included without a prefix or dependencies."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is None:
            yield route
            continue
        context = getattr(route, "include_context", None)
        if context is not None and not context.prefix and not context.dependencies:
            yield from _flat(included.routes)


def hot_endpoints(routes: list[Any]) -> dict[str, Endpoint]:
    """The app's plain `POST` routes on `HOT_PATHS` (FastAPI's `APIRoute`s are left alone)."""
    found: dict[str, Endpoint] = {}
    for route in _flat(routes):
        if type(route) is Route and route.path in HOT_PATHS and "POST" in (route.methods or ()):
            found.setdefault(route.path, route.endpoint)
    return found


def hot_sockets(routes: list[Any]) -> dict[str, SocketEndpoint]:
    """The app's WebSocket routes on `HOT_SOCKETS` whose endpoint takes only the socket."""
    found: dict[str, SocketEndpoint] = {}
    for route in _flat(routes):
        if (
            isinstance(route, APIWebSocketRoute)
            and route.path in HOT_SOCKETS
            and not route.dependencies
            and len(inspect.signature(route.endpoint).parameters) == 1
        ):
            found.setdefault(route.path, route.endpoint)
    return found


def install_hot_paths(app: Any) -> None:
    """Add the middleware; call it before any other `add_middleware` so it is innermost."""
    endpoints = hot_endpoints(app.routes)
    sockets = hot_sockets(app.routes)
    if endpoints or sockets:
        app.add_middleware(HotPathMiddleware, endpoints=endpoints, sockets=sockets)
