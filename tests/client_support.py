"""Helpers for the `nodetool chat` client tests: real editor servers and a small workflow."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from nodetool.api.apps import create_chat_server_app, create_editor_app
from nodetool.config import Settings
from tests.support.servers import ServerThread
from tests.support.settings import stub_settings

TOKEN = "client-test-token-0123456789"

# StringInput "text" -> Concat(a=text, b="!!") -> StringOutput "result"
SHOUT_WORKFLOW: dict[str, Any] = {
    "id": "shout",
    "name": "shout",
    "graph": {
        "nodes": [
            {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
            {"id": "cat", "type": "nodetool.text.Concat", "data": {"b": "!!"}},
            {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "result"}},
        ],
        "edges": [
            {"source": "in", "sourceHandle": "output", "target": "cat", "targetHandle": "a"},
            {"source": "cat", "sourceHandle": "output", "target": "out", "targetHandle": "value"},
        ],
    },
}


def settings(stub_url: str, data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("tools", ["calculator"])
    return stub_settings(stub_url, data_dir, **overrides)


@contextlib.contextmanager
def editor(stub_url: str, data_dir: Path, **overrides: Any) -> Iterator[ServerThread]:
    """A real `nodetool serve` app on a free loopback port."""
    with ServerThread(create_editor_app(settings(stub_url, data_dir, **overrides))) as server:
        yield server


@contextlib.contextmanager
def chat_server(stub_url: str, data_dir: Path) -> Iterator[ServerThread]:
    """A real `nodetool chat-server` app (no /chat WebSocket)."""
    app = create_chat_server_app(settings(stub_url, data_dir))
    with ServerThread(app) as server:
        yield server


def add_workflow(url: str, workflow: dict[str, Any], token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}/api/workflows", json=workflow, headers=headers, timeout=10)
    response.raise_for_status()


def thread_messages(url: str, thread_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/messages", params={"thread_id": thread_id}, timeout=10)
    response.raise_for_status()
    return response.json()["messages"]


def latest_thread(url: str) -> str:
    response = httpx.get(f"{url}/api/threads", params={"limit": 1}, timeout=10)
    response.raise_for_status()
    return response.json()["threads"][0]["id"]
