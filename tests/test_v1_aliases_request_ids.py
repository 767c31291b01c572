"""Model aliases (NODETOOL_MODEL_ALIASES, --model-alias) on every server and on /chat, and
`x-request-id` on every HTTP response and in the access log."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.chat_ws_support import chat_client, chunks_text
from tests.support.servers import CliServer
from tests.support.v1 import KINDS, MODEL, running, user

ALIASES = {"gpt-4": "openai/stub-model", "gpt-3.5-turbo": "stub-model-2", "ghost": "openai/none"}


@pytest.fixture(scope="module", params=KINDS)
def server(request, openai_stub, tmp_path_factory):
    kind = request.param
    path = tmp_path_factory.mktemp(f"alias-{kind}")
    with running(kind, openai_stub, path, default_model=MODEL, model_aliases=ALIASES) as srv:
        srv.kind = kind  # type: ignore[attr-defined]
        yield srv


def test_aliases_route_like_their_target(server, openai_stub) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="gpt-4", messages=user("hi"))
    assert reply.model == "gpt-4" and reply.choices[0].message.content == "Echo: hi"
    assert openai_stub.requests[-1]["model"] == "stub-model"
    response = client.responses.create(model="gpt-3.5-turbo", input="yo")
    assert response.model == "gpt-3.5-turbo"
    assert openai_stub.requests[-1]["model"] == "stub-model-2"


def test_aliases_are_listed_with_their_target(server) -> None:
    data = httpx.get(server.url + "/v1/models").json()["data"]
    entries = {entry["id"]: entry for entry in data}
    assert entries["gpt-4"]["owned_by"] == "openai/stub-model"
    assert entries["gpt-3.5-turbo"]["owned_by"] == "stub-model-2"
    assert entries["ghost"]["owned_by"] == "openai/none"  # listed even if the target is gone
    assert entries["gpt-4"]["capabilities"] == ["chat"]
    one = httpx.get(server.url + "/v1/models/gpt-4").json()
    assert one["owned_by"] == "openai/stub-model"


async def test_aliases_work_on_the_chat_websocket(openai_stub, tmp_path) -> None:
    with running("serve", openai_stub, tmp_path, model_aliases=ALIASES) as srv:
        async with chat_client(srv, True) as client:
            await client.send({"role": "user", "content": "Hello world", "model": "gpt-3.5-turbo"})
            frames = await client.turn()
    assert chunks_text(frames) == "Echo: Hello world"
    assert openai_stub.requests[-1]["model"] == "stub-model-2"


def test_request_id_on_every_response(server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        answers = [
            http.get("/health"),
            http.get("/v1/models"),
            http.get("/v1/nope"),
            http.post("/v1/chat/completions", content=b"{"),
            http.post(
                "/v1/chat/completions", json={"model": MODEL, "messages": user("s"), "stream": True}
            ),
            http.post("/v1/responses", json={"model": MODEL, "input": "x", "stream": True}),
        ]
        ids = [a.headers.get("x-request-id") for a in answers]
        assert all(i and i.startswith("req_") for i in ids) and len(set(ids)) == len(ids), ids
        mine = http.get("/v1/models", headers={"X-Request-Id": "client-id-42"})
        assert mine.headers["x-request-id"] == "client-id-42"
        bad = http.get("/v1/models", headers={"X-Request-Id": "has space"})
        assert bad.headers["x-request-id"].startswith("req_")


def test_sdk_sees_the_request_id(server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=user("id"))
    assert reply._request_id and reply._request_id.startswith("req_")
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[])
    assert exc.value.request_id and exc.value.request_id.startswith("req_")


def test_cli_alias_flag_and_access_log(openai_stub, tmp_path) -> None:
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_MODEL_ALIASES": "gpt-4=openai/stub-model-2",
        "AUTH_PROVIDER": "none",
        "NODETOOL_DATA_DIR": str(tmp_path),
        "PYTHONPATH": os.getcwd(),
    }
    server = CliServer(
        "chat-server",
        "--model-alias",
        "gpt-4=stub-model",
        "--model-alias",
        "o=stub-model-2",
        env=env,
    )
    with server:
        models = httpx.get(server.url + "/v1/models").json()["data"]
        owned = {m["id"]: m["owned_by"] for m in models}
        assert owned["gpt-4"] == "stub-model" and owned["o"] == "stub-model-2"  # flag wins
        answer = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "gpt-4", "messages": user("x")},
            headers={"X-Request-Id": "trace-me-123"},
        )
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "trace-me-123"
    output = server.proc.stdout.read() if server.proc.stdout else ""
    lines = [line for line in output.splitlines() if "POST /v1/chat/completions" in line]
    assert lines and lines[-1].endswith("request_id=trace-me-123"), output


def test_bad_alias_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nodetool", "chat-server", "--model-alias", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 2
    assert "--model-alias" in result.stderr and "NAME=TARGET" in result.stderr
