"""No leaks: upstream URLs (with their userinfo) and absolute server paths never reach a
client; tokens never reach a log line, however the query is encoded."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.sync.client import connect

from tests.chat_ws_support import chat_client, of_type
from tests.security.support import HealthProbe, LoggedServer, cli_server, output_of, server_env
from tests.support.servers import free_port

SECRET_USER, SECRET_PW = "leakuser", "leakpw-" + "s" * 12


def test_upstream_url_and_userinfo_never_reach_the_client(openai_stub, tmp_path) -> None:
    dead = free_port()
    upstream = f"http://{SECRET_USER}:{SECRET_PW}@127.0.0.1:{dead}/v1"
    env = server_env(openai_stub, tmp_path, OPENAI_BASE_URL=upstream, NODETOOL_LOG_LEVEL="info")
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
    server = LoggedServer("chat-server", env=env).start()
    try:
        with HealthProbe(server.url) as probe, httpx.Client(timeout=10) as client:
            while probe.wants_more():
                answers = [client.post(server.url + "/v1/chat/completions", json=body)]
                answers.append(
                    client.post(server.url + "/v1/chat/completions", json={**body, "stream": True})
                )
                answers.append(client.get(server.url + "/v1/models"))
        probe.check()
    finally:
        output = output_of(server)
    assert answers[0].status_code == 502
    assert answers[0].json()["error"]["message"].startswith("openai upstream failed")
    for answer in answers:
        text = answer.text
        for secret in (SECRET_USER, SECRET_PW, f":{dead}", "http://"):
            assert secret not in text, (secret, text)
    assert SECRET_PW not in output  # the log keeps the details, minus the userinfo


async def test_tool_errors_show_no_absolute_server_path(openai_stub, tmp_path) -> None:
    openai_stub.reset()
    with cli_server("serve", env=server_env(openai_stub, tmp_path)) as server:
        async with chat_client(server, binary=False) as client:
            files = {"tools": ["write_file", "read_file", "list_directory"]}
            await client.chat('[[tool:write_file {"path": "a.txt", "content": "x"}]] one', **files)
            frames = await client.chat(
                '[[tool:write_file {"path": "a.txt/b.txt", "content": "x"}]]', **files
            )
            frames += await client.chat('[[tool:read_file {"path": "a.txt/b.txt"}]] two', **files)
            frames += await client.chat('[[tool:list_directory {"path": "a.txt"}]] three', **files)
    results = of_type(frames, "tool_result")
    assert len(results) == 3 and not any(r["ok"] for r in results)
    shown = json.dumps(frames)
    assert str(tmp_path) not in shown
    assert "/data/workspaces" not in shown
    stored = json.dumps(openai_stub.requests)  # what the model was told
    assert str(tmp_path) not in stored


@pytest.mark.parametrize(
    "query",
    ["api%5Fkey={s}", "api%255Fkey={s}", "API_KEY={s}", "access%5ftoken={s}", "x=1&token={s}"],
)
def test_tokens_are_redacted_in_every_log_line(openai_stub, tmp_path, query: str) -> None:
    secret = "tok" + "Q" * 24
    env = server_env(openai_stub, tmp_path, NODETOOL_LOG_LEVEL="debug")
    server = LoggedServer("serve", env=env).start()
    try:
        q = query.format(s=secret)
        httpx.get(f"{server.url}/health?{q}")
        httpx.get(f"{server.url}/api/threads?{q}", headers={"Authorization": f"Bearer {secret}"})
        with connect(f"ws://127.0.0.1:{server.port}/chat?{q}") as ws:
            ws.send(json.dumps({"type": "ping"}))
            ws.recv(timeout=5)
    finally:
        output = output_of(server)
    assert "/health?" in output  # the access lines were logged
    assert secret not in output
