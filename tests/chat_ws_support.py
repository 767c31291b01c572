"""Helpers for the /chat WebSocket tests: a real editor app and a frame-speaking client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from nodetool.api.apps import create_editor_app
from nodetool.config import Settings
from tests.support.servers import ServerThread
from tests.support.settings import stub_settings

TIMEOUT = 15.0


def editor_settings(stub_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return stub_settings(stub_url, data_dir, **overrides)


@contextlib.contextmanager
def editor_server(stub_url: str, data_dir: Path, **overrides: Any) -> Iterator[ServerThread]:
    """A real editor app (`nodetool serve`) on a free loopback port."""
    app = create_editor_app(editor_settings(stub_url, data_dir, **overrides))
    with ServerThread(app) as server:
        yield server


def ws_url(server: ServerThread, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/chat" + (f"?{query}" if query else "")


class ChatClient:
    """Speaks MessagePack (binary) or JSON (text) and checks replies come in the same one."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.pings: list[dict[str, Any]] = []

    async def send(self, frame: Any) -> None:
        if self.binary:
            await self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, keep_pings: bool = False, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame (heartbeat pings are recorded and skipped unless asked for)."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            if self.binary:
                assert isinstance(raw, bytes), f"expected a MessagePack reply, got {raw!r}"
                frame = msgpack.unpackb(raw, raw=False)
            else:
                assert isinstance(raw, str), f"expected a JSON reply, got {raw!r}"
                frame = json.loads(raw)
            assert isinstance(frame, dict)
            if frame.get("type") == "ping" and not keep_pings:
                self.pings.append(frame)
                continue
            return frame

    async def until(self, kind: str, **match: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Frames up to and including the first of `kind` matching `match`."""
        seen: list[dict[str, Any]] = []
        while True:
            frame = await self.recv()
            seen.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame, seen

    async def turn(self) -> list[dict[str, Any]]:
        """Frames up to and including the turn's done chunk."""
        _, frames = await self.until("chunk", done=True)
        return frames

    async def chat(self, content: Any, **fields: Any) -> list[dict[str, Any]]:
        await self.send({"role": "user", "content": content, **fields})
        return await self.turn()

    async def assert_alive(self) -> None:
        """The socket still works: a ping gets its pong as the very next frame."""
        await self.send({"type": "ping"})
        frame = await self.recv()
        assert frame["type"] == "pong", frame
        assert isinstance(frame["ts"], int | float)


@contextlib.asynccontextmanager
async def chat_client(
    server: ServerThread, binary: bool = True, query: str = "", **kwargs: Any
) -> AsyncIterator[ChatClient]:
    async with connect(ws_url(server, query), max_size=None, **kwargs) as ws:
        yield ChatClient(ws, binary)


def chunks_text(frames: list[dict[str, Any]]) -> str:
    return "".join(f["content"] for f in frames if f.get("type") == "chunk" and not f["done"])


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == kind]
