"""The seed's browser example, run with Node.js (`ws` + `@msgpack/msgpack`) against `/chat`
with static-token auth: MessagePack in, binary MessagePack replies, chunks collected."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.chat_ws_support import editor_server
from tests.support.node import NODE_DIR, npm_install, require_node
from tests.support.servers import ServerThread

TOKEN = "node-static-token-0123456789"


@pytest.fixture(scope="module", autouse=True)
def node_and_npm() -> None:
    require_node()


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    npm_install()
    with editor_server(
        openai_stub.url,
        tmp_path_factory.mktemp("chat-ws-node"),
        auth_provider="static",
        worker_auth_token=TOKEN,
    ) as running:
        yield running


def run_node(server: ServerThread, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "chat_client.mjs", str(server.port), token, "stub-model", "Hello world"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_node_client_collects_streamed_chunks(server) -> None:
    result = run_node(server, TOKEN)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["text"] == "Echo: Hello world"
    assert report["chunks"] >= 2 and report["done"] is True
    assert len(report["threadIds"]) == 1 and report["threadIds"][0]


def test_node_client_with_a_wrong_token_is_refused(server) -> None:
    result = run_node(server, "wrong-token")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "1008" in result.stderr
