"""The OpenAI hot routes dispatched straight to their endpoints, around FastAPI's layers.

`POST /v1/chat/completions`, `/v1/responses`, `/v1/completions` and `/v1/embeddings` are
plain Starlette routes (no dependencies, no response model). `HotLaneApp` (the FastAPI class
every app factory uses) sends a `POST` to one of these exact paths down a lane of its own: the
app's middleware (request id, metrics, hosts, CORS, auth, limits: the same classes with the
same settings and shared state, built a second time around the endpoint) under Starlette's
server-error layer, skipping FastAPI's and Starlette's own per-request layers, the exception
middleware, router matching and the included routers' own matching: work done per request for
nothing on these routes. `HotPathMiddleware`, the innermost of the app's middleware, does the
same below the middleware for the `/chat` WebSocket (and for hot requests on an app whose lane
is off: FastAPI's native telemetry on). The routes stay registered, so OpenAPI documents them
and any other method or path (405, 404, a trailing slash) takes the ordinary way. Errors are
rendered by the same function the app's exception handler uses, so the wire output is
unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from starlette.middleware.errors import ServerErrorMiddleware
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
    request = Request(scope, receive, send)
    try:
        request._body = await _body(receive)  # `request.body()` returns it, no generator
        response = await endpoint(request)
    except NodetoolError as exc:
        response = error_response(exc)
    except ClientDisconnect:
        return  # the client left mid-body: nobody to answer, and not a server error
    await response(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    """The request body; ClientDisconnect if the client leaves before its end."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


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


class _Endpoints:
    """The lane's innermost app: the hot path's endpoint, run as `_run` does."""

    __slots__ = ("endpoints",)

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        self.endpoints = endpoints

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return _run(self.endpoints[scope["path"]], scope, receive, send)


class HotLaneApp(FastAPI):
    """FastAPI whose hot `POST`s take a lane with the app's middleware and nothing else."""

    _lane: ASGIApp | None = None
    _lane_paths: frozenset[str] | None = None
    _direct: Any = None  # the direct lane (False: none), built on first use

    def direct_lane(self) -> Any:
        """The `nodetool.api.direct_lane.DirectLane` the HTTP protocol hands hot requests to,
        or None (FastAPI's native telemetry on, or a middleware the lane does not know)."""
        direct = self._direct
        if direct is None:
            from nodetool.api.direct_lane import build_direct_lane

            telemetry = getattr(self, "_native_telemetry", None)
            if telemetry is not None and telemetry.enabled():
                direct = False
            else:
                direct = build_direct_lane(self, self.user_middleware) or False
            self._direct = direct
        return direct or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        paths = self._lane_paths
        if paths is None:
            paths = self._build_lane()
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in paths:
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            await self._lane(scope, receive, send)  # type: ignore[misc]
            return
        await super().__call__(scope, receive, send)

    def _build_lane(self) -> frozenset[str]:
        """The app's middleware around the hot endpoints (built on the first request, when
        every middleware has been added); no lane when FastAPI's native telemetry is on."""
        telemetry = getattr(self, "_native_telemetry", None)
        endpoints = hot_endpoints(self.routes)
        if not endpoints or (telemetry is not None and telemetry.enabled()):
            self._lane_paths = frozenset()
            return self._lane_paths
        lane: ASGIApp = _Endpoints(endpoints)
        for cls, args, kwargs in reversed(self.user_middleware):
            if cls is not HotPathMiddleware:
                lane = cls(lane, *args, **kwargs)
        handler = self.exception_handlers.get(Exception) or self.exception_handlers.get(500)
        self._lane = ServerErrorMiddleware(lane, handler=handler, debug=self.debug)
        self._lane_paths = frozenset(endpoints)
        return self._lane_paths


def install_hot_paths(app: Any) -> None:
    """Add the middleware; call it before any other `add_middleware` so it is innermost."""
    endpoints = hot_endpoints(app.routes)
    sockets = hot_sockets(app.routes)
    if endpoints or sockets:
        app.add_middleware(HotPathMiddleware, endpoints=endpoints, sockets=sockets)
