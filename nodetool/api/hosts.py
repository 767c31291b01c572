"""Trusted hosts: refuse requests whose `Host` header names a host this server does not serve.

This is the DNS-rebinding defence. A page on `rebind.attacker.example` whose name is made to
resolve to 127.0.0.1 reaches a local server with `Host: rebind.attacker.example:PORT`; the
browser treats that server as the attacker's own origin. Checking `Host` against a list of
names the server expects defeats it.

By default `nodetool serve` accepts only loopback names (`localhost`, `127.0.0.1`, `[::1]`,
any port); `worker` and `chat-server` accept any host unless `--allowed-hosts` is given.
Entries are host names (any port), `host:port`, `*.example.com` (subdomains) or `*` (any).
HTTP refusals are 400 OpenAI envelopes; WebSocket handshakes are answered with a 403.
Health probes (`/health`, `/ping`) answer any host: load balancers probe by IP address, and
they reveal nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from nodetool.api.asgi_json import send_error
from nodetool.config import Settings
from nodetool.errors import InvalidRequestError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
PROBE_PATHS = frozenset({"/health", "/ping"})


def split_host(value: str) -> tuple[str, str | None]:
    """(`host`, `port` or None) of a Host header or netloc; IPv6 keeps its brackets."""
    value = value.strip().lower().rstrip(".")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[: end + 1], value[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else None
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, None
    return host.rstrip("."), port


@dataclass(frozen=True)
class HostPolicy:
    """Which `Host` values a server answers; `patterns` empty means any."""

    patterns: tuple[str, ...]

    @property
    def allow_all(self) -> bool:
        return not self.patterns or "*" in self.patterns

    def allows(self, value: str | None) -> bool:
        if self.allow_all:
            return True
        if not value:
            return False
        host, port = split_host(value)
        if port is not None and not port.isdigit():
            return False
        for pattern in self.patterns:
            want_host, want_port = split_host(pattern)
            if want_port is not None and want_port != port:
                continue
            if want_host == host:
                return True
            if want_host.startswith("*.") and host.endswith(want_host[1:]):
                return True
        return False


def host_policy(settings: Settings, kind: str) -> HostPolicy:
    """The policy for app `kind`: `--allowed-hosts`, else loopback names on `serve`, else any."""
    if settings.allowed_hosts is not None:
        return HostPolicy(tuple(h.strip().lower() for h in settings.allowed_hosts if h.strip()))
    return HostPolicy(LOOPBACK_HOSTS if kind == "serve" else ())


def _host_header(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            return value.decode("latin-1")
    return None


def _refusal(host: str | None) -> InvalidRequestError:
    shown = repr(host[:200]) if host else "(none)"
    return InvalidRequestError(
        f"Host {shown} is not allowed on this server; start it with --allowed-hosts "
        "(env NODETOOL_ALLOWED_HOSTS) naming that host to accept it.",
        param="host",
        code="host_not_allowed",
    )


class TrustedHostMiddleware:
    """Pure ASGI: answer requests with an unexpected `Host` before anything else runs."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns the awaitable to run (an allowed request keeps no frame of ours)."""
        kind = scope["type"]
        if kind not in ("http", "websocket") or self.policy.allow_all:
            return self.app(scope, receive, send)
        host = _host_header(scope)
        if self.policy.allows(host) or (kind == "http" and scope["path"] in PROBE_PATHS):
            return self.app(scope, receive, send)
        return self._refuse(kind, host, receive, send)

    async def _refuse(self, kind: str, host: str | None, receive: Receive, send: Send) -> None:
        if kind == "http":
            await send_error(send, _refusal(host))
            return
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})


def install_hosts(app, settings: Settings, kind: str) -> HostPolicy:  # app: FastAPI
    """Add the trusted-host check as the outermost middleware."""
    policy = host_policy(settings, kind)
    app.add_middleware(TrustedHostMiddleware, policy=policy)
    return policy
