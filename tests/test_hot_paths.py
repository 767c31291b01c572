"""The hot routes' direct dispatch (api/hot_paths.py): found, documented, and only for them."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

from nodetool.api.apps import FACTORIES
from nodetool.api.hot_paths import HOT_PATHS, HotPathMiddleware, hot_endpoints, hot_sockets
from tests.support.v1 import MODEL, running, stub_settings, user


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory):
    with running("serve", openai_stub, tmp_path_factory.mktemp("hot-paths")) as srv:
        yield srv


@pytest.mark.parametrize("kind", ["serve", "worker", "chat-server"])
def test_every_app_dispatches_every_hot_route_directly(kind, openai_stub, tmp_path) -> None:
    """If FastAPI's route layout changes, the fast path must not silently disappear."""
    app = FACTORIES[kind](stub_settings(openai_stub, tmp_path))
    assert set(hot_endpoints(app.routes)) == set(HOT_PATHS)
    assert set(hot_sockets(app.routes)) == ({"/chat"} if kind == "serve" else set())
    innermost = app.user_middleware[-1]
    assert innermost.cls is HotPathMiddleware
    assert "post" in app.openapi()["paths"]["/v1/chat/completions"]  # routes stay registered


def test_hot_route_answers_and_errors_as_before(server) -> None:
    body = {"model": MODEL, "messages": user("hi")}
    ok = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["object"] == "chat.completion"
    assert ok.headers["x-request-id"].startswith("req_")
    bad = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "messages"
    assert bad.headers["content-type"] == "application/json"


def test_other_methods_and_paths_take_the_router(server) -> None:
    wrong_method = httpx.get(server.url + "/v1/chat/completions", timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    unknown = httpx.post(server.url + "/v1/chat/completions/x", json={}, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Unknown route"


def test_chat_socket_dispatched_directly_still_chats(server) -> None:
    url = server.url.replace("http://", "ws://") + "/chat"
    with connect(url) as socket:
        socket.send('{"type": "ping"}')
        assert '"pong"' in socket.recv(timeout=10)
        socket.send('{"type": "nonsense"}')
        assert '"unknown_type"' in socket.recv(timeout=10)
