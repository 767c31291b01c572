"""Helpers for the /v1 tests: start an app against the OpenAI stub, raw HTTP on a socket."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodetool.api.apps import FACTORIES
from nodetool.api.http_protocol import uvicorn_options
from nodetool.config import Settings
from tests.support.servers import ServerThread

KINDS = ["serve", "worker", "chat-server"]
MODEL = "stub-model"


def stub_settings(stub: Any, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_base_url": stub.url,
        "openai_api_key": "sk-test",
        "default_provider": "openai",
        "data_dir": data_dir,
        "auth_provider": "none",
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def running(kind: str, stub: Any, data_dir: Path, **overrides: Any) -> Iterator[ServerThread]:
    """The `kind` app (serve | worker | chat-server) on a free loopback port, served with the
    uvicorn options the CLI uses (its HTTP protocol, its limits)."""
    settings = stub_settings(stub, data_dir, **overrides)
    with ServerThread(FACTORIES[kind](settings), **uvicorn_options(settings)) as server:
        yield server


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw_request(
    url: str, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> socket.socket:
    """Send a POST on a fresh socket and return it unread (for disconnect tests)."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head + payload)
    return sock


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]
