"""The client going away cancels the upstream request at once (stream and non-stream).

The stub records the moment its client (our server's upstream connection) disconnects; each
test closes its own socket and expects that record within 1 s.
"""

from __future__ import annotations

import time

import openai
import pytest

from tests.support.v1 import KINDS, MODEL, raw_request, running, user

WITHIN = 1.0


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"v1-cancel-{request.param}")
    with running(request.param, openai_stub, data_dir) as srv:
        yield srv


def wait_upstream_request(stub, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(stub.requests) <= count:
        assert time.monotonic() < deadline, "the request never reached the upstream"
        time.sleep(0.01)


def read_until(sock, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}: {data!r}"
        data += chunk
    return data


def test_disconnect_cancels_a_streaming_upstream(server, openai_stub) -> None:
    body = {
        "model": MODEL,
        "messages": user("long answer [[chunks:50]] [[slow:0.2]]"),
        "stream": True,
    }
    sock = raw_request(server.url, body)
    read_until(sock, b'"content":')
    closed = time.monotonic()
    sock.close()
    assert openai_stub.wait_disconnect(timeout=WITHIN, after=closed) is not None


def test_disconnect_before_the_first_token_cancels_the_upstream(server, openai_stub) -> None:
    count = len(openai_stub.requests)
    body = {"model": MODEL, "messages": user("[[delay:30]]"), "stream": True}
    sock = raw_request(server.url, body)
    wait_upstream_request(openai_stub, count)
    closed = time.monotonic()
    sock.close()
    assert openai_stub.wait_disconnect(timeout=WITHIN, after=closed) is not None


def test_disconnect_cancels_a_non_stream_upstream(server, openai_stub) -> None:
    count = len(openai_stub.requests)
    sock = raw_request(server.url, {"model": MODEL, "messages": user("[[hang]]")})
    wait_upstream_request(openai_stub, count)
    closed = time.monotonic()
    sock.close()
    assert openai_stub.wait_disconnect(timeout=WITHIN, after=closed) is not None


def test_sdk_closing_a_stream_cancels_the_upstream(server, openai_stub) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-any", max_retries=0)
    with client:
        stream = client.chat.completions.create(
            model=MODEL, messages=user("go [[chunks:40]] [[slow:0.2]]"), stream=True
        )
        next(iter(stream))
        closed = time.monotonic()
        stream.close()
    assert openai_stub.wait_disconnect(timeout=WITHIN, after=closed) is not None
