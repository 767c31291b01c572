"""Auth matrix: every route and WebSocket of every app x every AUTH_PROVIDER x credentials.

Cases are generated from each app's route table (`app.routes`), so new routes are covered
automatically. Only the auth outcome is asserted: 401 / close 1008 versus anything else.
The three real apps come from `nodetool.api.apps`; the `demo` app (tests/support/auth_app.py)
runs the same auth stack over a small route table and always runs.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import routing as fastapi_routing
from starlette.routing import Mount, WebSocketRoute

from nodetool.api.auth.tokens import read_file_token
from nodetool.api.webchat.site import public_paths
from nodetool.config import Settings
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.auth_app import auth_settings, demo_app, ws_probe
from tests.support.servers import ServerThread

KINDS = ("serve", "worker", "chat-server")
MODES = ("none", "local", "static", "supabase")
CREDS = ("no-token", "wrong-token", "right-token")
PUBLIC = {"/health", "/ping"} | public_paths()  # and the web chat's page and files (serve)
BODY_METHODS = {"POST", "PUT", "PATCH"}


def _build(kind: str, settings: Settings) -> Any:
    if kind == "demo":
        return demo_app(settings, "serve")
    from nodetool.api.apps import FACTORIES

    return FACTORIES[kind](settings)


def _flat_routes(app: Any) -> list[tuple[Any, str, set[str] | None]]:
    """(route, path, methods) for every route, including those of included routers.

    Recent FastAPI keeps included routers as `_IncludedRouter` entries in `app.routes`;
    `fastapi.routing.iter_route_contexts` flattens them. Older versions list routes directly.
    """
    walk = getattr(fastapi_routing, "iter_route_contexts", None)
    if walk is None:
        return [(r, getattr(r, "path", ""), getattr(r, "methods", None)) for r in app.routes]
    return [(c.original_route, c.path or "", c.methods) for c in walk(app.routes)]


def _route_cases(app: Any) -> list[tuple[str, str]]:
    """(method | "WS", concrete path) for every route; path parameters become "x"."""
    cases: list[tuple[str, str]] = []
    for route, raw_path, methods in _flat_routes(app):
        path = re.sub(r"\{[^}]+\}", "x", raw_path)
        if isinstance(route, WebSocketRoute | fastapi_routing.APIWebSocketRoute):
            cases.append(("WS", path))
        elif isinstance(route, Mount):
            cases.append(("GET", path.rstrip("/") + "/"))
        elif methods:
            cases.extend((method, path) for method in sorted(methods))
        else:
            raise AssertionError(f"route of unknown kind {route!r}: extend the auth matrix")
    assert cases, "no routes found"
    return sorted(set(cases))


def _collect() -> list[Any]:
    params: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="nodetool-auth-routes-") as tmp:
        for kind in (*KINDS, "demo"):
            params.extend(_kind_cases(kind, Path(tmp)))
    return params


def _kind_cases(kind: str, home: Path) -> list[Any]:
    try:
        app = _build(kind, auth_settings(home / kind, "none"))
    except Exception as exc:  # reported by the test itself, not hidden as a skip
        return [pytest.param(kind, "BUILD", repr(exc), id=f"{kind}-build-error")]
    return [
        pytest.param(kind, method, path, id=f"{kind}-{method}-{path}")
        for method, path in _route_cases(app)
    ]


ROUTES = _collect()


class Servers:
    """One real uvicorn server per (app, mode), started on first use."""

    def __init__(self, home: Path, stub: SupabaseStub) -> None:
        self.home = home
        self.stub = stub
        self.running: dict[tuple[str, str], tuple[ServerThread, bytes | str]] = {}

    def get(self, kind: str, mode: str) -> tuple[ServerThread, str]:
        key = (kind, mode)
        if key not in self.running:
            home = self.home / f"{kind}-{mode}"
            extra: dict[str, Any] = {}
            if mode == "supabase":
                extra = {
                    "supabase_url": self.stub.url,
                    "supabase_key": self.stub.key,
                    "auth_rate_burst": 100_000,  # the matrix checks outcomes, not the rate limit
                }
            settings = auth_settings(home, mode, **extra)
            server = ServerThread(_build(kind, settings)).start()
            if mode == "static":
                right = read_file_token(settings)  # discovered/created by install_auth
            elif mode == "supabase":
                right = self.stub.issue(f"user-{kind}")
            else:
                right = "any-token"
            self.running[key] = (server, right)
        server, right = self.running[key]
        return server, right

    def close(self) -> None:
        for server, _ in self.running.values():
            server.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with SupabaseStub() as stub:
        registry = Servers(tmp_path_factory.mktemp("auth-matrix"), stub)
        try:
            yield registry
        finally:
            registry.close()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client


def _credential(cred: str, mode: str, right: str, stub: SupabaseStub) -> str | None:
    if cred == "no-token":
        return None
    if cred == "right-token":
        return right
    return stub.forged("intruder") if mode == "supabase" else "wrong-" + secrets.token_urlsafe(16)


@pytest.mark.parametrize("cred", CREDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "method", "path"), ROUTES)
def test_auth_outcome(
    servers: Servers, http: httpx.Client, kind: str, method: str, path: str, mode: str, cred: str
) -> None:
    if method == "BUILD":
        pytest.fail(f"building the {kind} app failed: {path}")
    server, right = servers.get(kind, mode)
    token = _credential(cred, mode, right, servers.stub)
    enforced = mode in ("static", "supabase")
    public = method != "WS" and path in PUBLIC
    denied = enforced and not public and cred != "right-token"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    if method == "WS":
        outcome, code, reason = ws_probe(server.url.replace("http", "ws", 1) + path, headers)
        if denied:
            assert (outcome, code) == ("closed", 1008), (outcome, code, reason)
            assert reason
        else:
            assert not (outcome == "closed" and code == 1008), (outcome, code, reason)
        return

    body = {} if method in BODY_METHODS else None
    resp = http.request(method, server.url + path, headers=headers, json=body)
    if denied:
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"] == "Bearer"
        if method != "HEAD":
            assert resp.json()["error"]["code"] == "invalid_api_key"
    else:
        assert resp.status_code != 401, resp.text
