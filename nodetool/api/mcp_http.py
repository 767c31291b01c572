"""`/mcp` on `serve` and `worker`: the MCP server (`mcp_server.py`) over Streamable HTTP.

Stateless JSON responses, so any worker behind a load balancer answers any request. The
route sits behind the app's auth middleware like every other route; each request's tools
and workflows are those of the user it authenticated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from nodetool.api.mcp_server import build_mcp_server, http_user

if TYPE_CHECKING:
    from fastapi import FastAPI

    from nodetool.runtime import Runtime

PATH = "/mcp"


class McpEndpoint:
    """The ASGI app at `/mcp`; `run(runtime)` serves it for the app's lifetime."""

    def __init__(self) -> None:
        self._app: Any = None

    @asynccontextmanager
    async def run(self, runtime: Runtime) -> AsyncIterator[None]:
        from mcp.server.streamable_http_manager import (
            StreamableHTTPASGIApp,
            StreamableHTTPSessionManager,
        )

        names = runtime.tools.default_names() if runtime.tools is not None else []
        server = build_mcp_server(runtime, names, http_user)
        manager = StreamableHTTPSessionManager(
            app=server,
            stateless=True,
            json_response=True,
            max_request_body_size=runtime.settings.max_body_bytes,
        )
        async with manager.run():
            self._app = StreamableHTTPASGIApp(manager)
            try:
                yield
            finally:
                self._app = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:  # only between lifespan shutdown and the last request
            from nodetool.api.errors import error_response
            from nodetool.errors import ProviderUnavailableError

            response = error_response(ProviderUnavailableError("the MCP endpoint is stopped"))
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


def mount_mcp(app: FastAPI) -> McpEndpoint:
    """Add the `/mcp` route to `app`; the caller runs the endpoint in its lifespan."""
    endpoint = McpEndpoint()
    app.router.routes.append(Route(PATH, endpoint, methods=["POST"], include_in_schema=False))
    return endpoint
