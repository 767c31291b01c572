"""CORS defaults per app, explicit origins, `*` without credentials, and the WebSocket Origin
guard, on real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodetool.api.auth.cors import CorsPolicy, cors_policy
from tests.support.auth_app import auth_settings, demo_app, ws_probe
from tests.support.servers import ServerThread

TOKEN = "cors-test-token"
EVIL = "https://evil.example"


def _preflight(server: ServerThread, origin: str, path: str = "/v1/chat/completions"):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(server.url + path, headers=headers)


def _server(home: Path, kind: str, **extra) -> ServerThread:
    settings = auth_settings(home, "static", worker_auth_token=TOKEN, **extra)
    return ServerThread(demo_app(settings, kind)).start()


@pytest.fixture(scope="module")
def serve_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    server = _server(tmp_path_factory.mktemp("cors-serve"), "serve")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    server = _server(tmp_path_factory.mktemp("cors-worker"), "worker")
    yield server
    server.stop()


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:5173", "http://127.0.0.1:3000", "http://localhost", "http://[::1]:8080"],
)
def test_serve_allows_localhost_origins_by_default(
    serve_default: ServerThread, origin: str
) -> None:
    resp = _preflight(serve_default, origin)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == origin
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    "origin", [EVIL, "http://localhost.evil.example", "http://localhost:80.evil.example", "null"]
)
def test_serve_refuses_other_origins(serve_default: ServerThread, origin: str) -> None:
    resp = _preflight(serve_default, origin)
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


def test_401_carries_cors_headers_for_allowed_origin(serve_default: ServerThread) -> None:
    origin = "http://localhost:5173"
    resp = httpx.get(serve_default.url + "/v1/models", headers={"Origin": origin})
    assert resp.status_code == 401
    assert resp.headers["access-control-allow-origin"] == origin
    assert "www-authenticate" in resp.headers["access-control-expose-headers"].lower()
    resp = httpx.get(serve_default.url + "/v1/models", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in resp.headers


def test_worker_has_no_cors_by_default(worker_default: ServerThread) -> None:
    resp = _preflight(worker_default, "http://localhost:5173")
    assert resp.status_code != 401  # still public, but nothing answers it as CORS
    assert "access-control-allow-origin" not in resp.headers
    resp = httpx.get(worker_default.url + "/health", headers={"Origin": "http://localhost:5173"})
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers


def test_explicit_origins(tmp_path: Path) -> None:
    allowed = "https://app.example"
    server = _server(tmp_path, "chat-server", cors_origins=[allowed + "/"])
    try:
        resp = _preflight(server, allowed)
        assert resp.headers["access-control-allow-origin"] == allowed
        assert resp.headers["access-control-allow-credentials"] == "true"
        assert _preflight(server, "http://localhost:5173").status_code == 400
        resp = httpx.get(
            server.url + "/v1/models",
            headers={"Origin": allowed, "Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == allowed
    finally:
        server.stop()


def test_star_is_never_combined_with_credentials(tmp_path: Path) -> None:
    server = _server(tmp_path, "serve", cors_origins=["https://a.example", "*"])
    try:
        resp = _preflight(server, EVIL)
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in resp.headers
        resp = httpx.get(server.url + "/health", headers={"Origin": EVIL})
        assert resp.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in resp.headers
    finally:
        server.stop()


def test_empty_origin_list_disables_cors_on_serve(tmp_path: Path) -> None:
    server = _server(tmp_path, "serve", cors_origins=[])
    try:
        resp = _preflight(server, "http://localhost:5173")
        assert "access-control-allow-origin" not in resp.headers
    finally:
        server.stop()


def test_policies() -> None:
    home = Path("/nonexistent")
    assert cors_policy(auth_settings(home, "local"), "worker") is None
    assert cors_policy(auth_settings(home, "local"), "chat-server") is None
    serve = cors_policy(auth_settings(home, "local"), "serve")
    assert serve is not None and serve.allows("http://localhost:1") and not serve.allows(EVIL)
    star = CorsPolicy(origins=("*",)).middleware_options()
    assert star["allow_origins"] == ["*"] and star["allow_credentials"] is False
    assert star["allow_origin_regex"] is None


# --- WebSocket Origin guard ------------------------------------------------------------


def _ws(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def test_websocket_from_foreign_origin_is_closed_1008(serve_default: ServerThread) -> None:
    headers = {"Origin": EVIL, "Authorization": f"Bearer {TOKEN}"}
    outcome, code, reason = ws_probe(_ws(serve_default, "/chat"), headers)
    assert (outcome, code) == ("closed", 1008)
    assert reason == "origin not allowed"


@pytest.mark.parametrize("origin", [None, "http://localhost:5173"])
def test_websocket_from_allowed_or_no_origin(
    serve_default: ServerThread, origin: str | None
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if origin:
        headers["Origin"] = origin
    outcome, frame, _ = ws_probe(_ws(serve_default, "/chat"), headers)
    assert outcome == "frame"
    assert frame["user_id"] == "1"


def test_websocket_same_origin_is_allowed_without_cors(worker_default: ServerThread) -> None:
    headers = {"Origin": worker_default.url, "Authorization": f"Bearer {TOKEN}"}
    outcome, _, _ = ws_probe(_ws(worker_default, "/chat"), headers)
    assert outcome == "frame"
    outcome, code, _ = ws_probe(_ws(worker_default, "/chat"), {**headers, "Origin": EVIL})
    assert (outcome, code) == ("closed", 1008)
