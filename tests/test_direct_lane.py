"""The direct lane (api/direct_lane.py): plain hot requests skip uvicorn's cycle and the
middleware frames; whenever a middleware would act, the ordinary way answers; both alike."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nodetool.api.direct_lane import DirectLane
from tests.support.v1 import MODEL, running, user

TOKEN = "lane-test-token-Qw7"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def static_server(openai_stub, tmp_path_factory):
    home = tmp_path_factory.mktemp("lane-static")
    with running(
        "chat-server", openai_stub, home, auth_provider="static", worker_auth_token=TOKEN
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def serve(openai_stub, tmp_path_factory):
    """`serve` has a CORS policy (localhost origins) and loopback-only hosts."""
    with running("serve", openai_stub, tmp_path_factory.mktemp("lane-serve")) as srv:
        yield srv


@pytest.fixture
def lane_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths the direct lane ran, in order."""
    seen: list[str] = []
    original = DirectLane.run

    def counted(self: DirectLane, exchange: Any, endpoint: Any, user: str) -> Any:
        seen.append(exchange.scope["path"])
        return original(self, exchange, endpoint, user)

    monkeypatch.setattr(DirectLane, "run", counted)
    yield seen


def _auth(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **extra}


def _body(stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": user("hi"), "stream": stream}


def _raw(url: str, data: bytes, *, read_until_close: bool = False, count: int = 1) -> bytes:
    """Write `data` on a fresh socket; read `count` whole responses (or until close)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            received += chunk
            if not chunk or (not read_until_close and _complete(received) >= count):
                return received


def _complete(data: bytes) -> int:
    """How many whole Content-Length responses `data` holds."""
    done = 0
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue): no body
            data = rest
            continue
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(rest) < length:
            break
        done += 1
        data = rest[length:]
    return done


def _post_bytes(path: str, body: bytes, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_plain_requests_take_the_lane(static_server, lane_runs) -> None:
    ok = httpx.post(static_server.url + CHAT, json=_body(), headers=_auth(), timeout=10)
    assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"
    assert ok.headers["x-request-id"].startswith("req_")
    streamed = httpx.post(static_server.url + CHAT, json=_body(True), headers=_auth(), timeout=10)
    assert streamed.text.endswith("data: [DONE]\n\n")
    echoed = httpx.post(
        static_server.url + CHAT + "?trace=1",
        json=_body(),
        headers=_auth(**{"X-Request-Id": "client-id-1"}),
        timeout=10,
    )
    assert echoed.headers["x-request-id"] == "client-id-1"
    bad = httpx.post(static_server.url + CHAT, json={"model": MODEL}, headers=_auth(), timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    assert lane_runs == [CHAT] * 4


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_a_refused_token_takes_the_ordinary_way(static_server, lane_runs, headers) -> None:
    resp = httpx.post(static_server.url + CHAT, json=_body(), headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert lane_runs == []


def test_forwarded_chunked_and_expect_take_the_ordinary_way(static_server, lane_runs) -> None:
    forwarded = httpx.post(
        static_server.url + CHAT,
        json=_body(),
        headers=_auth(**{"X-Forwarded-For": "10.1.2.3"}),
        timeout=10,
    )
    assert forwarded.status_code == 200

    def chunks() -> Iterator[bytes]:
        yield json.dumps(_body()).encode()

    chunked = httpx.post(static_server.url + CHAT, content=chunks(), headers=_auth(), timeout=10)
    assert chunked.status_code == 200 and chunked.json()["object"] == "chat.completion"
    payload = json.dumps(_body()).encode()
    answer = _raw(static_server.url, _post_bytes(CHAT, payload, "Expect: 100-continue\r\n"))
    assert b"HTTP/1.1 100 Continue" in answer and b"HTTP/1.1 200 OK" in answer
    percent = _raw(static_server.url, _post_bytes("/v1/chat/%63ompletions", payload))
    assert percent.startswith(b"HTTP/1.1 200 OK")
    assert lane_runs == []


def test_cors_origin_and_foreign_host_take_the_ordinary_way(serve, lane_runs) -> None:
    origin = "http://localhost:5173"
    resp = httpx.post(serve.url + CHAT, json=_body(), headers={"Origin": origin}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == origin
    foreign = httpx.post(
        serve.url + CHAT, json=_body(), headers={"Host": "rebind.example:80"}, timeout=10
    )
    assert foreign.status_code == 400 and foreign.json()["error"]["code"] == "host_not_allowed"
    assert lane_runs == []
    plain = httpx.post(serve.url + CHAT, json=_body(), timeout=10)
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
    assert lane_runs == [CHAT]


def _shape(raw: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """Header names in order and the body with its per-response values blanked."""
    head, _, body = raw.partition(b"\r\n\r\n")
    names = [line.split(b":")[0] for line in head.split(b"\r\n")[1:]]
    data = json.loads(body)
    data["id"] = data["created"] = None
    return names, data


def test_the_lane_and_the_ordinary_way_answer_alike(static_server, lane_runs) -> None:
    """The same request answered both ways (the second through the ordinary way: an
    `X-Forwarded-For` header it has no effect on): the same status line, header names in the
    same order, the same body."""
    payload = json.dumps(_body()).encode()
    lane = _raw(static_server.url, _post_bytes(CHAT, payload))
    ordinary = _raw(static_server.url, _post_bytes(CHAT, payload, "X-Forwarded-Proto: http\r\n"))
    assert lane_runs == [CHAT]
    assert lane.split(b"\r\n")[0] == ordinary.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert _shape(lane) == _shape(ordinary)
    old = _raw(static_server.url, _post_bytes(CHAT, payload, version="1.0"), read_until_close=True)
    assert b"connection: close" in old.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert lane_runs == [CHAT, CHAT]


def test_pipelined_requests_are_answered_in_order(static_server, lane_runs) -> None:
    first = json.dumps({"model": MODEL, "messages": user("one")}).encode()
    second = json.dumps({"model": MODEL}).encode()  # a 400, so the two answers differ
    answer = _raw(static_server.url, _post_bytes(CHAT, first) + _post_bytes(CHAT, second), count=2)
    statuses = re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", answer)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    assert lane_runs[0] == CHAT  # the second waited behind it on the ordinary way or the lane


@pytest.mark.parametrize("kind", ["serve", "worker", "chat-server"])
def test_every_app_has_the_lane_unless_a_token_must_be_awaited(kind, openai_stub, tmp_path):
    from nodetool.api.apps import FACTORIES
    from tests.support.v1 import stub_settings

    app = FACTORIES[kind](stub_settings(openai_stub, tmp_path))
    lane = app.direct_lane()
    assert isinstance(lane, DirectLane)
    assert set(lane.endpoints) == {CHAT, "/v1/responses", "/v1/completions", "/v1/embeddings"}
    remote = stub_settings(
        openai_stub,
        tmp_path,
        auth_provider="supabase",
        supabase_url="http://127.0.0.1:9",
        supabase_key="anon",
    )
    assert FACTORIES[kind](remote).direct_lane() is None  # JWTs are verified the ordinary way


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_wait(openai_stub, tmp_path):
    """The keep-alive wait runs on the connection's one timer: a connection that sends its
    next request in time is kept; one that stays idle longer is closed."""
    import time

    from nodetool.api.apps import FACTORIES
    from nodetool.api.http_protocol import uvicorn_options
    from tests.support.servers import ServerThread
    from tests.support.v1 import stub_settings

    settings = stub_settings(openai_stub, tmp_path)
    app = FACTORIES["chat-server"](settings)
    payload = json.dumps(_body()).encode()
    with ServerThread(app, timeout_keep_alive=1, **uvicorn_options(settings)) as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            for _ in range(3):  # each request within the wait keeps the connection
                sock.sendall(_post_bytes(CHAT, payload))
                answer = b""
                while _complete(answer) < 1:
                    answer += sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200 OK")
                time.sleep(0.6)
            began = time.monotonic()
            assert sock.recv(65536) == b""  # closed by the server
            assert time.monotonic() - began < 2.5
