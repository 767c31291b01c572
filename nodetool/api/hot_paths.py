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

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nodetool.api.errors import error_response
from nodetool.errors import NodetoolError

HOT_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings")
Endpoint = Callable[[Request], Awaitable[Response]]


class HotPathMiddleware:
    """Pure ASGI: `POST` to a hot path runs its endpoint; everything else passes through."""

    __slots__ = ("app", "endpoints")

    def __init__(self, app: ASGIApp, endpoints: dict[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await _run(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _run(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """What Starlette's `request_response` does, with the app's NodetoolError handler inline.

    The endpoint's own errors happen before any response starts; the responses it returns
    (`TaskResponse`, `EventStreamResponse`) turn later errors into their own error output.
    """
    try:
        response = await endpoint(Request(scope, receive, send))
    except NodetoolError as exc:
        response = error_response(exc)
    await response(scope, receive, send)


def hot_endpoints(
    routes: list[Any], found: dict[str, Endpoint] | None = None
) -> dict[str, Endpoint]:
    """The app's plain `POST` routes on the hot paths (FastAPI's `APIRoute`s are left alone),
    looking into routers included without a prefix or dependencies."""
    found = {} if found is None else found
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            if context is not None and not context.prefix and not context.dependencies:
                hot_endpoints(included.routes, found)
        elif type(route) is Route and route.path in HOT_PATHS and "POST" in (route.methods or ()):
            found.setdefault(route.path, route.endpoint)
    return found


def install_hot_paths(app: Any) -> None:
    """Add the middleware; call it before any other `add_middleware` so it is innermost."""
    endpoints = hot_endpoints(app.routes)
    if endpoints:
        app.add_middleware(HotPathMiddleware, endpoints=endpoints)
