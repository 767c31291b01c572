"""Auth middleware on real servers: 401 envelope, WebSocket 1008, token sources, public paths,
user id in handlers, and token redaction in uvicorn's logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodetool.api.auth.logs import (
    RedactTokensFilter,
    _RedactingFactory,
    install_log_redaction,
    redact,
)
from nodetool.api.auth.middleware import AuthMiddleware, install_auth
from tests.support.auth_app import auth_settings, demo_app, ws_probe
from tests.support.servers import ServerThread, serve_app

TOKEN = "static-test-token-Zx9"


def _ws(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.fixture(scope="module")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home = tmp_path_factory.mktemp("auth-static")
    settings = auth_settings(home, "static", worker_auth_token=TOKEN)
    with serve_app(demo_app(settings, "worker")) as server:
        yield server


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home = tmp_path_factory.mktemp("auth-local")
    with serve_app(demo_app(auth_settings(home, "local"), "worker")) as server:
        yield server


def test_missing_token_is_401_envelope(static_server: ServerThread) -> None:
    resp = httpx.get(static_server.url + "/v1/models")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert error["param"] is None
    assert "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
        "Bearer sk-\u00e9\u00e8",
    ],
)
def test_wrong_credentials_are_401(static_server: ServerThread, header: str) -> None:
    resp = httpx.post(
        static_server.url + "/v1/chat/completions",
        headers={"Authorization": header.encode("utf-8")},
        json={},
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_reaches_handler_as_user_1(static_server: ServerThread, scheme: str) -> None:
    resp = httpx.get(
        static_server.url + "/api/threads/t1", headers={"Authorization": f"{scheme} {TOKEN}"}
    )
    assert resp.status_code == 200
    assert resp.json() == {"id": "t1", "user_id": "1"}


def test_query_token_is_not_accepted_over_http(static_server: ServerThread) -> None:
    for key in ("api_key", "token"):
        resp = httpx.get(static_server.url + "/v1/models", params={key: TOKEN})
        assert resp.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/ping"])
def test_health_and_ping_are_public(static_server: ServerThread, path: str) -> None:
    resp = httpx.get(static_server.url + path)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_trailing_slash_is_not_a_bypass(static_server: ServerThread) -> None:
    assert httpx.get(static_server.url + "/health/").status_code == 401
    assert httpx.get(static_server.url + "/v1/models/").status_code == 401
    assert httpx.get(static_server.url + "/HEALTH").status_code == 401


def test_metrics_is_protected_by_default(static_server: ServerThread) -> None:
    assert httpx.get(static_server.url + "/metrics").status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(static_server.url + "/metrics", headers=headers).status_code == 200


def test_metrics_public_when_configured(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, "static", worker_auth_token=TOKEN, public_metrics=True)
    with serve_app(demo_app(settings, "worker")) as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        assert httpx.get(server.url + "/v1/models").status_code == 401


def test_cors_preflight_is_public(static_server: ServerThread) -> None:
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    resp = httpx.options(static_server.url + "/v1/chat/completions", headers=headers)
    assert resp.status_code != 401
    # an OPTIONS request that is not a preflight is not public
    resp = httpx.options(static_server.url + "/v1/chat/completions")
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("suffix", "headers"),
    [
        ("", {"Authorization": f"Bearer {TOKEN}"}),
        (f"?api_key={TOKEN}", {}),
        (f"?token={TOKEN}", {}),
        (f"?other=1&token={TOKEN}", {}),
    ],
)
def test_websocket_token_sources(static_server: ServerThread, suffix: str, headers: dict) -> None:
    outcome, frame, _ = ws_probe(_ws(static_server, "/chat" + suffix), headers)
    assert outcome == "frame"
    assert frame["user_id"] == "1"


@pytest.mark.parametrize(
    ("suffix", "headers", "reason_part"),
    [
        ("", {}, "missing token"),
        ("?api_key=nope", {}, "invalid"),
        ("?token=", {}, "missing token"),
        ("", {"Authorization": "Bearer nope"}, "invalid"),
        (f"?api_key={TOKEN}", {"Authorization": "Bearer nope"}, "invalid"),  # header wins
    ],
)
def test_websocket_failure_closes_1008(
    static_server: ServerThread, suffix: str, headers: dict, reason_part: str
) -> None:
    outcome, code, reason = ws_probe(_ws(static_server, "/predict" + suffix), headers)
    assert (outcome, code) == ("closed", 1008)
    assert reason_part in reason


def test_local_mode_needs_no_token_and_ignores_wrong_ones(local_server: ServerThread) -> None:
    for headers in ({}, {"Authorization": "Bearer whatever"}):
        resp = httpx.get(local_server.url + "/api/threads/a", headers=headers)
        assert resp.status_code == 200
        assert resp.json()["user_id"] == "1"
    outcome, frame, _ = ws_probe(_ws(local_server, "/chat?api_key=whatever"))
    assert outcome == "frame"
    assert frame["user_id"] == "1"


def test_auth_runs_before_the_app_reads_the_body(static_server: ServerThread) -> None:
    body = b"x" * (1024 * 1024)
    resp = httpx.post(static_server.url + "/v1/chat/completions", content=body)
    assert resp.status_code == 401


def test_install_auth_adds_one_pure_asgi_middleware(tmp_path: Path) -> None:
    app = demo_app(auth_settings(tmp_path, "static", worker_auth_token=TOKEN))
    auth = [m for m in app.user_middleware if m.cls is AuthMiddleware]
    assert len(auth) == 1
    assert not any(m.cls.__name__ == "BaseHTTPMiddleware" for m in app.user_middleware)


# --- log redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /chat?api_key=s3cr3t HTTP/1.1", "GET /chat?api_key=[REDACTED] HTTP/1.1"),
        ("/chat?x=1&token=abc.def-ghi&y=2", "/chat?x=1&token=[REDACTED]&y=2"),
        ('"WebSocket /chat?TOKEN=abc" [accepted]', '"WebSocket /chat?TOKEN=[REDACTED]" [accepted]'),
        ("/ping?mytoken=keep&tokens=keep", "/ping?mytoken=keep&tokens=keep"),
        ("no query here", "no query here"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_log_redaction_is_installed_once(tmp_path: Path) -> None:
    app = demo_app(auth_settings(tmp_path, "local"))
    install_auth(app, auth_settings(tmp_path, "local"))
    install_log_redaction()
    factory = logging.getLogRecordFactory()
    assert isinstance(factory, _RedactingFactory)
    assert not isinstance(factory.inner, _RedactingFactory)  # wrapped once
    record = factory("x", logging.INFO, __file__, 1, "GET %s", ("/chat?api_key=s",), None)
    assert record.getMessage() == "GET /chat?api_key=[REDACTED]"
    assert RedactTokensFilter().filter(record)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_tokens_never_reach_uvicorn_logs(tmp_path: Path) -> None:
    secret_http = "httpsecret" + "A" * 20
    secret_ws = "wssecret" + "B" * 20
    settings = auth_settings(tmp_path, "static", worker_auth_token=secret_ws)
    # uvicorn configures its loggers (dictConfig) after the app is built: the filter must survive
    with serve_app(demo_app(settings, "worker"), log_level="info") as server:
        capture = _Capture()
        loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
        for logger in loggers:
            logger.addHandler(capture)
        try:
            httpx.get(server.url + f"/ping?api_key={secret_http}")
            httpx.get(server.url + f"/v1/models?token={secret_http}")
            outcome, frame, _ = ws_probe(_ws(server, f"/chat?token={secret_ws}"))
            assert outcome == "frame"
            ws_probe(_ws(server, f"/chat?api_key={secret_http}"))
        finally:
            for logger in loggers:
                logger.removeHandler(capture)
    text = "\n".join(capture.lines)
    assert "/ping?api_key=[REDACTED]" in text
    assert "WebSocket /chat?token=[REDACTED]" in text
    assert secret_http not in text
    assert secret_ws not in text
