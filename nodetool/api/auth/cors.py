"""CORS for the three apps, and the matching Origin check for browser WebSockets.

Origins come from `--cors-origins` / `NODETOOL_CORS_ORIGINS`. Unset: `serve` allows the
localhost origins (any port), `worker` and `chat-server` allow none. `*` allows every origin
but never together with credentials. Browsers do not apply CORS to WebSockets, so a WebSocket
handshake whose `Origin` is not allowed is closed with 1008. Allowed: the CORS origins and the
origins on the trusted hosts (`api/hosts.py`: loopback names on `serve` by default); a server
that trusts any host also accepts its own origin (Origin == Host).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from nodetool.api.hosts import HostPolicy, host_policy
from nodetool.config import Settings

LOCALHOST_ORIGIN_REGEX = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?"
EXPOSE_HEADERS = ("Retry-After", "WWW-Authenticate", "X-Request-Id")
_ORIGIN_CLOSE = {"type": "websocket.close", "code": 1008, "reason": "origin not allowed"}


@dataclass(frozen=True)
class CorsPolicy:
    """Which browser origins may call this app."""

    origins: tuple[str, ...] = ()
    origin_regex: str | None = None

    @property
    def allow_all(self) -> bool:
        return "*" in self.origins

    def allows(self, origin: str) -> bool:
        if self.allow_all or origin in self.origins:
            return True
        return self.origin_regex is not None and re.fullmatch(self.origin_regex, origin) is not None

    def middleware_options(self) -> dict[str, object]:
        """Keyword arguments for Starlette's (pure ASGI) CORSMiddleware."""
        return {
            "allow_origins": ["*"] if self.allow_all else list(self.origins),
            "allow_origin_regex": None if self.allow_all else self.origin_regex,
            "allow_methods": ["*"],
            "allow_headers": ["*"],
            "allow_credentials": not self.allow_all,  # never `*` with credentials
            "expose_headers": list(EXPOSE_HEADERS),
        }


def cors_policy(settings: Settings, kind: str) -> CorsPolicy | None:
    """The policy for app `kind` ("serve" | "worker" | "chat-server"); None means no CORS."""
    if settings.cors_origins is None:
        return CorsPolicy(origin_regex=LOCALHOST_ORIGIN_REGEX) if kind == "serve" else None
    origins = tuple(o.strip().rstrip("/") for o in settings.cors_origins if o.strip())
    return CorsPolicy(origins=origins) if origins else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _origin_netloc(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


class WebSocketOriginGuard:
    """Pure ASGI: refuse browser WebSockets from origins neither CORS nor the hosts allow."""

    def __init__(
        self, app: ASGIApp, policy: CorsPolicy | None, hosts: HostPolicy | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.hosts = hosts or HostPolicy(())

    def allows(self, origin: str, host: str | None) -> bool:
        if self.policy is not None and self.policy.allows(origin):
            return True
        netloc = _origin_netloc(origin)
        if netloc is None:
            return False
        if self.hosts.allow_all:  # no host list: only the server's own origin
            return host is not None and netloc == host.lower()
        return self.hosts.allows(netloc)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns the awaitable to run (HTTP keeps no frame of ours)."""
        if scope["type"] == "websocket":
            origin = _header(scope, b"origin")
            if origin is not None and not self.allows(origin, _header(scope, b"host")):
                return _refuse_socket(receive, send)
        return self.app(scope, receive, send)


async def _refuse_socket(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send(_ORIGIN_CLOSE)


def install_cors(app, settings: Settings, kind: str) -> CorsPolicy | None:  # app: FastAPI
    """Add the WebSocket origin guard and, when a policy exists, CORSMiddleware (outermost)."""
    policy = cors_policy(settings, kind)
    app.add_middleware(WebSocketOriginGuard, policy=policy, hosts=host_policy(settings, kind))
    if policy is not None:
        app.add_middleware(CORSMiddleware, **policy.middleware_options())
    return policy
