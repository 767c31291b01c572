"""The direct lane: the common hot request run straight from the HTTP protocol.

A `POST` to one of the hot paths (`nodetool.api.hot_paths.HOT_PATHS`) that needs none of the
app's middleware to do anything but let it through skips uvicorn's request-response cycle,
its proxy-headers layer, the app's dispatch and every middleware frame:
`GuardedHttpToolsProtocol` asks `DirectLane.take` once the request's headers are in, gathers
the body into a `DirectExchange`, and `DirectLane.run` does what the middleware would have
done for such a request, calling the same homes: the request id and request count
(`request_layer.open_request`/`close_request`), the admission slot (`nodetool.admission`,
a 429 from the same error), the user the static token names (`auth.middleware`), and the
endpoint run as the ASGI lane runs it (`hot_paths._run`).

`take` says no (and the request takes the ordinary way, with the same outcome) whenever a
middleware would act on the request: a `Host` the trusted-host policy refuses, an `Origin`
under a CORS policy, `X-Forwarded-*` headers when uvicorn applies them, a missing or wrong
token, an authenticator that must be awaited, a body over the limit or of unknown length
(chunked), `Expect: 100-continue`, a percent-encoded path, a root path, or a request
pipelined behind an unfinished one. The lane is built from the app's own middleware list and
exists only when every middleware in it is one it knows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.middleware.cors import CORSMiddleware

from nodetool.admission import Admission
from nodetool.api.asgi_json import send_error
from nodetool.api.auth.cors import WebSocketOriginGuard
from nodetool.api.auth.middleware import AuthMiddleware, StaticAuthenticator, bearer_token
from nodetool.api.hosts import HostPolicy, TrustedHostMiddleware
from nodetool.api.hot_paths import Endpoint, HotPathMiddleware, _run, hot_endpoints
from nodetool.api.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from nodetool.api.metrics import Metrics
from nodetool.api.request_layer import RequestLayer, close_request, open_request
from nodetool.api.request_user import set_user_id
from nodetool.config import DEFAULT_USER

if TYPE_CHECKING:
    from nodetool.api.direct_exchange import DirectExchange

log = logging.getLogger("nodetool.api")

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto")
_UNTAKEN = frozenset({b"transfer-encoding", b"expect"})  # bodies of unknown size, 100-continue
_NEUTRAL = (HotPathMiddleware, WebSocketOriginGuard)  # let HTTP requests through untouched


class DirectLane:
    """What the app's middleware decides for a hot request, decided in one place."""

    __slots__ = (
        "app",
        "endpoints",
        "by_path",
        "hosts",
        "authenticator",
        "admission",
        "prefix",
        "max_body",
        "metrics",
        "_refused",
    )

    def __init__(self, app: Any, endpoints: dict[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = endpoints
        self.by_path = {path.encode(): endpoint for path, endpoint in endpoints.items()}
        self.hosts: HostPolicy | None = None
        self.authenticator: StaticAuthenticator | None = None
        self.admission: Admission | None = None
        self.prefix = "/v1/"
        self.max_body: int | None = None
        self.metrics: Metrics | None = None
        self._refused = _UNTAKEN

    def use_cors(self) -> None:
        """Under a CORS policy a request with an `Origin` takes the ordinary way."""
        self._refused = _UNTAKEN | {b"origin"}

    def take(
        self, path: bytes, headers: list[tuple[bytes, bytes]], forwarded: bool
    ) -> tuple[Endpoint, str] | None:
        """(endpoint, user id) when the request can run in the lane, else None.

        `forwarded`: uvicorn would apply `X-Forwarded-*` headers from this client.
        """
        endpoint = self.by_path.get(path)
        if endpoint is None:
            return None
        length = -1
        host: str | None = None
        token: bytes | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"authorization":
                token = value
            elif name in self._refused or (forwarded and name in _FORWARDED):
                return None
        if length < 0 or (self.max_body is not None and length > self.max_body):
            return None
        hosts = self.hosts
        if hosts is not None and not (hosts.allow_all or (host and hosts.allows(host))):
            return None
        authenticator = self.authenticator
        if authenticator is None:
            return endpoint, DEFAULT_USER
        credentials = bearer_token(token)
        user = authenticator.check(credentials) if credentials else None
        return None if user is None else (endpoint, user)

    async def run(self, exchange: DirectExchange, endpoint: Endpoint, user: str) -> None:
        scope = exchange.scope
        scope["app"] = self.app
        set_user_id(scope, user)
        exchange.request_id, token = open_request(scope)
        gone = False
        admission = self.admission if scope["path"].startswith(self.prefix) else None
        try:
            if admission is not None and not admission.try_acquire():
                refusal, admission = admission.overloaded(), None
                await send_error(exchange.send, refusal)
            else:
                await _run(endpoint, scope, exchange.receive, exchange.send)
            gone = not exchange.response_complete
        except OSError:
            gone = True
        except Exception as exc:  # as Starlette's server-error layer, then uvicorn, do
            if not exchange.response_started:
                await send_error(exchange.send, exc)  # logged there
            else:
                log.error("request failed mid-response", exc_info=exc)
            exchange.protocol.transport.close()
        finally:
            if admission is not None:
                admission.release()
            complete = exchange.response_complete
            close_request(self.metrics, scope, exchange.status, complete, gone, token)  # type: ignore[arg-type]


def build_direct_lane(app: Any, middleware: list[Any]) -> DirectLane | None:
    """The lane for `app` from its middleware list, or None when a middleware in it is one
    the lane does not know (the ordinary way then serves every request)."""
    endpoints = hot_endpoints(app.routes)
    if not endpoints:
        return None
    lane = DirectLane(app, endpoints)
    for cls, _args, kwargs in middleware:
        if cls in _NEUTRAL:
            continue
        if cls is TrustedHostMiddleware:
            lane.hosts = kwargs["policy"]
        elif cls is CORSMiddleware:
            lane.use_cors()
        elif cls is AuthMiddleware:
            authenticator = kwargs["authenticator"]
            if authenticator is not None and type(authenticator) is not StaticAuthenticator:
                return None  # a token that must be awaited: the ordinary way
            lane.authenticator = authenticator
        elif cls is ConcurrencyLimitMiddleware:
            lane.admission = kwargs["admission"]
            lane.prefix = kwargs.get("prefix", "/v1/")
        elif cls is BodyLimitMiddleware:
            lane.max_body = kwargs["max_bytes"]
        elif cls is RequestLayer:
            lane.metrics = kwargs["metrics"]
        else:
            return None
    return lane if lane.metrics is not None else None
