"""/v1 through the real `nodetool chat-server` CLI process, and with auth enforced."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.servers import CliServer
from tests.support.v1 import KINDS, MODEL, raw_request, running, user

TOKEN = "v1-test-token-0123456789"


@pytest.fixture(scope="module")
def cli_server(openai_stub, tmp_path_factory):
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DATA_DIR": str(tmp_path_factory.mktemp("v1-cli")),
        "AUTH_PROVIDER": "none",
    }
    args = ("--provider", "openai", "--tools", "calculator", "--log-level", "warning")
    with CliServer("chat-server", *args, env=env) as server:
        yield server


def test_cli_chat_server_completions(cli_server) -> None:
    with openai.OpenAI(base_url=cli_server.url + "/v1", api_key="x", max_retries=0) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("via cli"))
        assert completion.choices[0].message.content == "Echo: via cli"
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=user("streamed via cli"),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "Echo: streamed via cli"
        )
        assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_cli_chat_server_runs_server_tools(cli_server) -> None:
    with openai.OpenAI(base_url=cli_server.url + "/v1", api_key="x", max_retries=0) as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=user('6 times 7? [[tool:calculator {"expression": "6*7"}]]')
        )
    message = completion.choices[0].message
    assert message.tool_calls is None
    assert "42" in message.content


def test_cli_chat_server_cancels_upstream_on_disconnect(cli_server, openai_stub) -> None:
    body = {"model": MODEL, "messages": user("[[chunks:50]] [[slow:0.2]] x"), "stream": True}
    sock = raw_request(cli_server.url, body)
    data = b""
    while b'"content":' not in data:
        chunk = sock.recv(65536)
        assert chunk
        data += chunk
    closed = time.monotonic()
    sock.close()
    assert openai_stub.wait_disconnect(timeout=1.0, after=closed) is not None


# ---- auth ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def auth_server(request, openai_stub, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"v1-auth-{request.param}")
    with running(
        request.param, openai_stub, data_dir, auth_provider="static", worker_auth_token=TOKEN
    ) as server:
        yield server


def test_wrong_key_is_authentication_error(auth_server) -> None:
    with (
        openai.OpenAI(base_url=auth_server.url + "/v1", api_key="wrong-key", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        c.chat.completions.create(model=MODEL, messages=user("x"))
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    missing = httpx.post(auth_server.url + "/v1/chat/completions", json={"messages": user("x")})
    assert missing.status_code == 401


def test_right_key_works_and_metrics_need_it(auth_server) -> None:
    with openai.OpenAI(base_url=auth_server.url + "/v1", api_key=TOKEN, max_retries=0) as c:
        completion = c.chat.completions.create(model=MODEL, messages=user("authed"))
        assert completion.choices[0].message.content == "Echo: authed"
        assert any(m.id == MODEL for m in c.models.list())
    assert httpx.get(auth_server.url + "/metrics").status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.get(auth_server.url + "/metrics", headers=headers)
    assert response.status_code == 200
    assert "nodetool_http_requests_total" in response.text


def test_public_metrics_flag(openai_stub, tmp_path) -> None:
    with running(
        "chat-server",
        openai_stub,
        tmp_path,
        auth_provider="static",
        worker_auth_token=TOKEN,
        public_metrics=True,
    ) as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        missing = httpx.post(server.url + "/v1/chat/completions", json={"messages": user("x")})
        assert missing.status_code == 401
