"""/v1 on the wire (raw HTTP): SSE framing, keep-alives, mid-stream errors, limits, metrics."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.v1 import MODEL, running, sse_data, user

LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory):
    with running(
        "chat-server",
        openai_stub,
        tmp_path_factory.mktemp("v1-wire"),
        keepalive_interval=0.2,
        upstream_timeout=1.0,
        max_body_bytes=LIMIT,
    ) as srv:
        yield srv


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=15) as client:
        yield client


def post(http: httpx.Client, **body) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": MODEL, **body})


def test_stream_defaults_to_false(http) -> None:
    response = post(http, messages=user("plain"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: plain",
        "refusal": None,
    }
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_sse_framing(http) -> None:
    response = post(
        http, messages=user("a b c"), stream=True, stream_options={"include_usage": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text.endswith("data: [DONE]\n\n")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    finish = chunks[-2]
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_keep_alive_while_upstream_is_slow(http) -> None:
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": MODEL, "messages": user("wait [[delay:0.7]]"), "stream": True},
    ) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    first_data = text.index("data: ")
    assert ": keep-alive\n\n" in text[:first_data]
    assert sse_data(text)[-1] == "[DONE]"


def test_keep_alive_between_slow_chunks(http) -> None:
    response = post(http, messages=user("ab [[chunks:2]] [[slow:0.7]]"), stream=True)
    events = [e for e in response.text.split("\n\n") if e]
    kinds = ["data" if e.startswith("data: ") else e for e in events]
    first, second = (i for i, e in enumerate(events) if '"content":"' in e and "role" not in e)
    assert ": keep-alive" in kinds[first + 1 : second]
    assert kinds[-1] == "data"


def test_max_tokens_and_stop_list(http, openai_stub) -> None:
    response = post(http, messages=user("limits"), max_tokens=5, stop=["a", "b"])
    assert response.status_code == 200
    sent = openai_stub.requests[-1]
    assert sent["max_tokens"] == 5
    assert sent["stop"] == ["a", "b"]


def test_mid_stream_failure_is_one_error_event_then_done(http) -> None:
    response = post(http, messages=user("one two three four [[reset:2]]"), stream=True)
    assert response.status_code == 200
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])
    assert set(error) == {"error"}
    assert error["error"]["type"] == "upstream_error"
    assert error["error"]["message"]
    contents = [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-2]]
    assert len([c for c in contents if c]) == 2


def test_upstream_timeout_is_504(http) -> None:
    response = post(http, messages=user("[[hang]]"))
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"


def test_upstream_timeout_after_keep_alive_is_an_error_event(http) -> None:
    response = post(http, messages=user("[[hang]]"), stream=True)
    assert response.status_code == 200
    assert ": keep-alive" in response.text
    payloads = sse_data(response.text)
    assert json.loads(payloads[-2])["error"]["code"] == "upstream_timeout"
    assert payloads[-1] == "[DONE]"


def test_invalid_json_is_400(http) -> None:
    response = http.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_provider_is_400(http) -> None:
    response = post(http, messages=user("x"), provider="martian")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "provider"


def test_declared_body_over_limit_is_413(http) -> None:
    response = post(http, messages=user("x" * LIMIT))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_over_limit_is_413(http) -> None:
    payload = json.dumps({"model": MODEL, "messages": user("y" * LIMIT)}).encode()

    def chunks():
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    response = http.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_limit_is_accepted(http) -> None:
    payload = json.dumps({"model": MODEL, "messages": user("small")}).encode()
    response = http.post("/v1/chat/completions", content=iter([payload[:10], payload[10:]]))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Echo: small"


def test_metrics_exposition(http) -> None:
    post(http, messages=user("metered"), stream=True)
    post(http, messages=user("metered"))
    post(http, messages=user("[[error:500]]"))
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    (instance,) = set(re.findall(r'instance="([^"]+)"', text))  # one process, one instance
    assert 'route="/v1/chat/completions",status="200"' in text
    assert 'route="/v1/chat/completions",status="502"' in text
    tokens = f'nodetool_tokens_total{{direction="out",instance="{instance}",provider="openai"}}'
    assert tokens in text
    assert (
        f'nodetool_chat_latency_seconds_count{{instance="{instance}",provider="openai",'
        'stream="true"}' in text
    )
    assert "nodetool_chat_time_to_first_token_seconds_bucket" in text
    assert (
        f'nodetool_upstream_errors_total{{code="upstream_error",instance="{instance}",'
        'provider="openai"}' in text
    )
    assert f'nodetool_inflight_streams{{instance="{instance}"}} 0.0' in text
