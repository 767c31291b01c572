"""Completions beyond the configured concurrency are shed with 429 + Retry-After."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.support.v1 import MODEL, running, user


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory):
    with running(
        "chat-server",
        openai_stub,
        tmp_path_factory.mktemp("v1-overload"),
        max_concurrent_completions=1,
    ) as srv:
        yield srv


def test_second_completion_while_one_runs_is_429(server) -> None:
    streaming = threading.Event()
    release = threading.Event()

    def hold_one_stream() -> None:
        body = {
            "model": MODEL,
            "stream": True,
            "messages": user("[[slow:0.2]] [[chunks:20]] hold the only slot"),
        }
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json=body, timeout=30
        ) as response:
            for _ in response.iter_lines():
                streaming.set()
                if release.is_set():
                    break

    holder = threading.Thread(target=hold_one_stream)
    holder.start()
    try:
        assert streaming.wait(10)
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": MODEL, "messages": user("hi")},
            timeout=10,
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "rate_limit_error"
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=user("hi"))
        # The limit covers every /v1 route; health is never limited.
        assert httpx.get(server.url + "/v1/models").status_code == 429
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        release.set()
        holder.join(30)
    # The slot is released once the server notices the holder went away.
    statuses: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ok = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": MODEL, "messages": user("after")},
            timeout=10,
        )
        statuses.append(ok.status_code)
        if ok.status_code == 200:
            break
        time.sleep(0.05)
    assert statuses[-1] == 200, statuses
