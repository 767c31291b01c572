"""The seed's browser example, run with Node.js (`ws` + `@msgpack/msgpack`) against `/chat`
with static-token auth: MessagePack in, binary MessagePack replies, chunks collected."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat_ws_support import editor_server
from tests.support.needs import NODE, missing
from tests.support.servers import ServerThread

NODE_DIR = Path(__file__).parent / "node"
TOKEN = "node-static-token-0123456789"


@pytest.fixture(scope="module", autouse=True)
def node_and_npm() -> None:
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if absent:
        missing(f"{' and '.join(absent)} not found on PATH", NODE)


def npm_install() -> None:
    """`npm install` once; node_modules is kept (gitignored) for later runs."""
    modules = NODE_DIR / "node_modules"
    if (modules / "ws").is_dir() and (modules / "@msgpack" / "msgpack").is_dir():
        return
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"npm install failed:\n{result.stdout}\n{result.stderr}"


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
