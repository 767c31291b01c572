"""Each app mounts exactly its surface's routes (docs/protocol.md §1); the CLI servers start."""

from __future__ import annotations

import httpx
import pytest
from fastapi import routing as fastapi_routing
from starlette.routing import Mount, Route, WebSocketRoute

from nodetool import __version__
from nodetool.api.apps import create_chat_server_app, create_editor_app, create_worker_app
from nodetool.config import Settings
from tests.support.servers import CliServer, ServerThread

COMMON = {
    ("GET", "/health"),
    ("GET", "/ping"),
    ("GET", "/metrics"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id:path}"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("GET", "/v1/responses/{response_id}/input_items"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/completions"),
}
EDITOR = COMMON | {
    ("WS", "/chat"),
    ("WS", "/predict"),
    ("POST", "/api/threads"),
    ("GET", "/api/threads"),
    ("GET", "/api/threads/{thread_id}"),
    ("PUT", "/api/threads/{thread_id}"),
    ("DELETE", "/api/threads/{thread_id}"),
    ("GET", "/api/messages"),
    ("GET", "/api/messages/{message_id}"),
    ("GET", "/api/workflows"),
    ("POST", "/api/workflows"),
    ("GET", "/api/workflows/{workflow_id}"),
    ("PUT", "/api/workflows/{workflow_id}"),
    ("DELETE", "/api/workflows/{workflow_id}"),
    ("POST", "/api/workflows/{workflow_id}/run"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{job_id}"),
    ("POST", "/api/jobs/{job_id}/cancel"),
    ("POST", "/mcp"),
    ("GET", "/api/tools"),
    ("GET", "/"),  # the web chat (docs/webchat.md) and its files
    ("MOUNT", "/ui"),
}
WORKER = COMMON | {
    ("GET", "/workflows"),
    ("POST", "/workflows/{workflow_id}/run"),
    ("POST", "/workflows/{workflow_id}/run/stream"),
    ("POST", "/mcp"),
    ("GET", "/jobs/{job_id}"),
    ("GET", "/jobs/{job_id}/events"),
    ("POST", "/jobs/{job_id}/cancel"),
}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _flat(app) -> list[tuple[object, str, set[str] | None]]:
    walk = getattr(fastapi_routing, "iter_route_contexts", None)
    if walk is None:  # older FastAPI lists included routes directly
        return [(r, getattr(r, "path", ""), getattr(r, "methods", None)) for r in app.routes]
    return [(c.original_route, c.path or "", c.methods) for c in walk(app.routes)]


def surface(app) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for route, path, methods in _flat(app):
        if isinstance(route, WebSocketRoute):
            routes.add(("WS", path))
        elif isinstance(route, Route) and path not in DOCS:
            routes |= {(m, path) for m in (methods or ()) if m != "HEAD"}
        elif isinstance(route, Mount):
            routes.add(("MOUNT", path))
    return routes


@pytest.mark.parametrize(
    ("factory", "expected"),
    [(create_editor_app, EDITOR), (create_worker_app, WORKER), (create_chat_server_app, COMMON)],
    ids=["editor", "worker", "chat-server"],
)
def test_app_mounts_exactly_its_surface(factory, expected, tmp_path) -> None:
    app = factory(Settings(data_dir=tmp_path, openai_base_url="http://127.0.0.1:9/v1"))
    assert surface(app) == expected


@pytest.fixture(scope="module")
def chat_server(openai_stub):
    settings = Settings(
        openai_base_url=openai_stub.url, openai_api_key="sk-test", default_provider="openai"
    )
    with ServerThread(create_chat_server_app(settings)) as server:
        yield server


def test_unknown_route_is_openai_envelope(chat_server) -> None:
    response = httpx.get(chat_server.url + "/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}


def test_wrong_method_is_openai_envelope(chat_server) -> None:
    response = httpx.delete(chat_server.url + "/health")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_health_and_ping(chat_server) -> None:
    assert httpx.get(chat_server.url + "/health").json() == {"status": "ok", "version": __version__}
    assert httpx.get(chat_server.url + "/ping").status_code == 200


@pytest.mark.parametrize("kind", ["serve", "worker", "chat-server"])
def test_cli_server_starts_and_answers_health(kind, openai_stub, tmp_path) -> None:
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DATA_DIR": str(tmp_path),
    }
    with CliServer(kind, "--provider", "openai", env=env) as server:
        body = httpx.get(server.url + "/health").json()
    assert body == {"status": "ok", "version": __version__}
