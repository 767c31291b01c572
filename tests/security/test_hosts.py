"""DNS rebinding: only trusted `Host` names are served, only their origins open WebSockets."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.security.support import HealthProbe, cli_server, port_of, raw_socket, server_env

REBIND = "rebind.attacker.example"


def _ws(url: str, host: str, origin: str | None):
    """A /chat WebSocket to the server at `url` that claims `Host: host`."""
    sock = raw_socket(url)
    return connect(f"ws://{host}/chat", sock=sock, origin=origin, open_timeout=5)


def _chat_works(ws) -> None:
    ws.send(json.dumps({"type": "ping"}))
    assert json.loads(ws.recv(timeout=5))["type"] == "pong"


@pytest.fixture(scope="module")
def serve(openai_stub, tmp_path_factory):
    env = server_env(openai_stub, tmp_path_factory.mktemp("hosts-serve"))
    with cli_server("serve", env=env) as server:
        yield server


def test_rebinding_host_is_refused_while_health_stays_fast(serve) -> None:
    port = port_of(serve.url)
    attempts = 0
    with HealthProbe(serve.url) as probe, httpx.Client(timeout=5) as client:
        while attempts < 100 or probe.wants_more():
            attempts += 1
            response = client.get(
                serve.url + "/api/threads",
                headers={"Host": f"{REBIND}:{port}", "Origin": f"http://{REBIND}:{port}"},
            )
            assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "host_not_allowed"
    assert REBIND in error["message"] and "--allowed-hosts" in error["message"]
    probe.check()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_names_with_and_without_port_are_served(serve, host: str) -> None:
    port = port_of(serve.url)
    for value in (host, f"{host}:{port}"):
        response = httpx.get(serve.url + "/api/threads", headers={"Host": value})
        assert response.status_code == 200, value


def test_rebinding_websocket_is_refused(serve) -> None:
    port = port_of(serve.url)
    with pytest.raises(InvalidStatus) as refused:
        _ws(serve.url, f"{REBIND}:{port}", f"http://{REBIND}:{port}")
    assert refused.value.response.status_code == 403


def test_foreign_origin_on_a_loopback_host_is_refused(serve) -> None:
    port = port_of(serve.url)
    with (
        _ws(serve.url, f"127.0.0.1:{port}", "http://evil.example") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize("page", ["http://localhost:{port}", "http://127.0.0.1:{port}"])
def test_the_web_chat_page_origin_is_allowed(serve, page: str) -> None:
    port = port_of(serve.url)
    with _ws(serve.url, f"127.0.0.1:{port}", page.format(port=port)) as ws:
        _chat_works(ws)


def test_allowed_hosts_widens_the_list(openai_stub, tmp_path) -> None:
    env = server_env(openai_stub, tmp_path)
    args = ("--allowed-hosts", "nodetool.example,localhost")
    with cli_server("serve", *args, env=env) as server:
        ok = httpx.get(server.url + "/api/threads", headers={"Host": "nodetool.example"})
        assert ok.status_code == 200
        assert httpx.get(server.url + "/health", headers={"Host": "localhost"}).status_code == 200
        refused = httpx.get(server.url + "/api/threads", headers={"Host": REBIND})
        assert refused.status_code == 400
        refused = httpx.get(server.url + "/api/threads", headers={"Host": "127.0.0.1"})
        assert refused.status_code == 400  # the list replaces the loopback default
        with _ws(server.url, "nodetool.example", "https://nodetool.example") as ws:
            _chat_works(ws)


@pytest.mark.parametrize("kind", ["worker", "chat-server"])
def test_worker_and_chat_server_follow_allowed_hosts(openai_stub, tmp_path, kind: str) -> None:
    env = server_env(openai_stub, tmp_path)
    with cli_server(kind, env=env) as server:  # deployed behind proxies: any host by default
        assert httpx.get(server.url + "/v1/models", headers={"Host": REBIND}).status_code == 200
    with cli_server(kind, "--allowed-hosts", "api.example.com", env=env) as server:
        assert httpx.get(server.url + "/v1/models", headers={"Host": REBIND}).status_code == 400
        response = httpx.get(server.url + "/v1/models", headers={"Host": "api.example.com"})
        assert response.status_code == 200
