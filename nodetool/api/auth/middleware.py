"""Pure ASGI auth for HTTP and WebSocket scopes (docs/protocol.md §10, §4).

The authenticated user id goes to the scope (`request_user.set_user_id`), where handlers read
it (`request_user.user_id_of`). Modes `none`/`local` let everything through as user "1".
With `static` or `supabase`, only `/health`, `/ping`, CORS preflights (and `/metrics` when
configured public) are open; HTTP failures are 401 OpenAI envelopes with
`WWW-Authenticate: Bearer`, WebSocket failures are accepted and then closed with 1008.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable
from typing import Protocol
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodetool.api.asgi_json import send_error
from nodetool.api.auth.cors import install_cors
from nodetool.api.auth.logs import install_log_redaction
from nodetool.api.auth.supabase import (
    AuthRateLimitedError,
    AuthUnavailableError,
    SupabaseVerifier,
)
from nodetool.api.auth.tokens import AuthConfigError, ensure_static_token
from nodetool.api.hosts import install_hosts
from nodetool.api.request_user import set_user_id
from nodetool.config import DEFAULT_USER, Settings
from nodetool.errors import AuthenticationError, NodetoolError, OverloadedError

PUBLIC_PATHS = frozenset({"/health", "/ping"})
APP_KINDS = {
    "nodetool editor": "serve",
    "nodetool worker": "worker",
    "nodetool chat-server": "chat-server",
}
MISSING = "Missing API key: send it as 'Authorization: Bearer <token>'."
INVALID = "Invalid or expired API key."
WS_MISSING = "missing token: send 'Authorization: Bearer <token>' or an api_key/token query value"
WS_INVALID = "invalid or expired token"
_QUERY_KEYS = ("api_key", "token")


class Authenticator(Protocol):
    async def authenticate(self, token: bytes, client: str | None = None) -> str | None:
        """The user id for `token`, None when it is not valid."""
        ...

    async def aclose(self) -> None: ...


class StaticAuthenticator:
    """One shared token, compared in constant time; its user is "1"."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def check(self, token: bytes) -> str | None:
        return DEFAULT_USER if hmac.compare_digest(token, self._token) else None

    async def authenticate(self, token: bytes, client: str | None = None) -> str | None:
        return self.check(token)

    async def aclose(self) -> None:
        return None


class SupabaseAuthenticator:
    """Supabase JWTs; the static token too, only when explicitly allowed."""

    def __init__(self, verifier: SupabaseVerifier, static: StaticAuthenticator | None) -> None:
        self.verifier = verifier
        self.static = static

    async def authenticate(self, token: bytes, client: str | None = None) -> str | None:
        if self.static is not None and await self.static.authenticate(token):
            return DEFAULT_USER
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            return None
        return await self.verifier.verify(text, client)

    async def aclose(self) -> None:
        await self.verifier.aclose()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The credentials of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(b" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == b"bearer" and credentials else None


def request_token(scope: Scope) -> bytes | None:
    """`Authorization: Bearer` value; for WebSockets also the `api_key`/`token` query value."""
    token = bearer_token(_header(scope, b"authorization"))
    if token:
        return token
    if scope["type"] == "websocket" and scope.get("query_string"):
        params = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        for key in _QUERY_KEYS:
            if params.get(key):
                return params[key].encode("utf-8")
    return None


class AuthMiddleware:
    """Authenticate every HTTP request and WebSocket handshake before the app sees it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator | None,
        public_paths: frozenset[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.public_paths = public_paths

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns the awaitable to run: a request let through without waiting for an
        authenticator (no auth, a public path, the static token) keeps no frame of ours."""
        kind = scope["type"]
        if kind == "lifespan":
            return self.app(scope, receive, self._closing_send(send))
        if kind not in ("http", "websocket"):
            return self.app(scope, receive, send)
        authenticator = self.authenticator
        if authenticator is None:
            set_user_id(scope, DEFAULT_USER)
            return self.app(scope, receive, send)
        if kind == "http" and self._is_public(scope):
            return self.app(scope, receive, send)
        token = request_token(scope)
        if token and type(authenticator) is StaticAuthenticator:
            user_id = authenticator.check(token)
            if user_id is not None:
                set_user_id(scope, user_id)
                return self.app(scope, receive, send)
        return self._authenticate(scope, receive, send, token)

    async def _authenticate(
        self, scope: Scope, receive: Receive, send: Send, token: bytes | None
    ) -> None:
        client = scope.get("client")
        try:
            user_id = (
                await self.authenticator.authenticate(token, client[0] if client else None)
                if token
                else None
            )
        except AuthUnavailableError as exc:
            await self._unavailable(scope, receive, send, str(exc))
            return
        except AuthRateLimitedError as exc:
            await self._rate_limited(scope, receive, send, exc.retry_after)
            return
        if user_id is None:
            await self._reject(scope, receive, send, missing=token is None)
            return
        set_user_id(scope, user_id)
        await self.app(scope, receive, send)

    def _is_public(self, scope: Scope) -> bool:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if path in self.public_paths:
            return True
        return (
            scope["method"] == "OPTIONS"
            and _header(scope, b"origin") is not None
            and _header(scope, b"access-control-request-method") is not None
        )

    def _closing_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            done = message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed")
            if done and self.authenticator is not None:
                await self.authenticator.aclose()
            await send(message)

        return wrapped

    async def _reject(self, scope: Scope, receive: Receive, send: Send, *, missing: bool) -> None:
        if scope["type"] == "websocket":
            await _close_ws(receive, send, 1008, WS_MISSING if missing else WS_INVALID)
            return
        error = AuthenticationError(
            MISSING if missing else INVALID, headers={"WWW-Authenticate": "Bearer"}
        )
        await send_error(send, error)

    async def _unavailable(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        message = f"Authentication service unavailable ({why}); try again later."
        if scope["type"] == "websocket":
            await _close_ws(receive, send, 1013, "authentication service unavailable")
            return
        error = NodetoolError(
            message, status=503, code="auth_unavailable", headers={"Retry-After": "5"}
        )
        await send_error(send, error)

    async def _rate_limited(
        self, scope: Scope, receive: Receive, send: Send, retry_after: float
    ) -> None:
        if scope["type"] == "websocket":
            await _close_ws(receive, send, 1013, "too many authentication attempts")
            return
        seconds = str(max(1, math.ceil(retry_after)))
        error = OverloadedError(
            "Too many authentication attempts from this client; retry later.",
            code="auth_rate_limited",
            headers={"Retry-After": seconds},
        )
        await send_error(send, error)


async def _close_ws(receive: Receive, send: Send, code: int, reason: str) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})


def build_authenticator(settings: Settings) -> Authenticator | None:
    """None for modes none/local (no token file is touched); else the mode's authenticator."""
    mode = settings.auth_provider
    if mode in ("none", "local"):
        return None
    if mode == "static":
        return StaticAuthenticator(ensure_static_token(settings).token)
    if mode == "supabase":
        if not (settings.supabase_url and settings.supabase_key):
            raise AuthConfigError(
                "AUTH_PROVIDER=supabase needs SUPABASE_URL and SUPABASE_KEY to be set"
            )
        static = None
        if settings.supabase_allow_static_token:
            static = StaticAuthenticator(ensure_static_token(settings).token)
        verifier = SupabaseVerifier(
            settings.supabase_url,
            settings.supabase_key,
            cache_ttl=settings.auth_cache_ttl,
            cache_max=settings.auth_cache_max,
            negative_ttl=settings.auth_negative_cache_ttl,
            max_concurrency=settings.auth_max_concurrency,
            rate_per_client=settings.auth_rate_per_client,
            rate_burst=settings.auth_rate_burst,
        )
        return SupabaseAuthenticator(verifier, static)
    raise AuthConfigError(f"unknown AUTH_PROVIDER {mode!r} (none | local | static | supabase)")


def install_auth(
    app,  # FastAPI
    settings: Settings,
    kind: str | None = None,
    public_paths: frozenset[str] = frozenset(),
) -> None:
    """Add auth, the WebSocket origin guard, CORS and the trusted-host check to `app`; redact
    tokens in logs.

    `kind` ("serve" | "worker" | "chat-server") picks the default CORS origins; when omitted
    it is derived from the app's title. `public_paths` are further exact paths served without
    a token (the web chat's page and static files).
    """
    kind = kind or APP_KINDS.get(getattr(app, "title", ""), "worker")
    install_log_redaction()
    public = PUBLIC_PATHS | public_paths | ({"/metrics"} if settings.public_metrics else set())
    app.add_middleware(
        AuthMiddleware, authenticator=build_authenticator(settings), public_paths=public
    )
    install_cors(app, settings, kind)
    install_hosts(app, settings, kind)
