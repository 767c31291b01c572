"""WebSocket transport: `websockets` + MessagePack frames to `URL/chat` (docs/protocol.md §4).

The thread lives on the server. A background reader answers heartbeats at once and queues every
other frame; a turn yields queued frames until the `chunk` with `done: true` that ends it.
Stopping sends `{type: "stop"}`; the server then ends the turn itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from nodetool.client.base import ChatState, ClientError, Frame, refused, unreachable
from nodetool.client.rest import Rest

OPEN_TIMEOUT = 10.0
ERROR_GRACE = 5.0  # after an error frame, wait this long for the turn's closing chunk
MAX_FRAME = 64 * 1024 * 1024
_CLOSED = object()


def ws_url(url: str) -> str:
    """`http://host:port[/base]` → `ws://host:port[/base]/chat`."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/chat"


def encode(frame: Frame) -> bytes:
    import msgpack

    return msgpack.packb(frame, use_bin_type=True)


def decode(raw: bytes | str) -> Any:
    """A binary frame is MessagePack, a text frame JSON; undecodable frames give None."""
    try:
        if isinstance(raw, str):
            return json.loads(raw)
        import msgpack

        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return None


class WsConnection:
    """Chat over the `/chat` WebSocket with the thread kept on the server."""

    transport = "ws"

    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.url = ws_url(state.url)
        self.rest = Rest(state.url, state.token)
        self.final: Frame | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pong: asyncio.Event = asyncio.Event()

    # ---- connection ------------------------------------------------------------------------
    async def open(self, check: bool = True) -> None:
        """Connect and prove the token is accepted (a ping answered with a pong)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, InvalidURI

        headers = {"Authorization": f"Bearer {self.state.token}"} if self.state.token else None
        try:
            self._ws = await connect(
                self.url,
                additional_headers=headers,
                max_size=MAX_FRAME,
                open_timeout=OPEN_TIMEOUT,
                ping_interval=20,
            )
        except InvalidURI:
            raise ClientError(f"invalid --url {self.state.url!r}", code=2) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:  # nodetool itself refuses tokens with close code 1008
                raise refused(self.state.url, f"HTTP {status}", self.state.token) from None
            # Starlette answers 403 to a WebSocket on a route that does not exist
            raise ClientError(
                f"{self.url} answered HTTP {status} instead of a WebSocket; /chat exists only "
                "on `nodetool serve` (drop --ws for chat-server or worker)",
                fatal=True,
            ) from None
        except (OSError, TimeoutError) as exc:
            raise unreachable(self.state.url, exc) from None
        except Exception as exc:  # other handshake failures
            raise unreachable(self.state.url, exc) from None
        self._queue = asyncio.Queue()
        self._pong = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        await self._send({"type": "ping"})
        waiter = asyncio.create_task(self._pong.wait())
        closed = asyncio.create_task(self._reader_done())
        try:
            await asyncio.wait(
                {waiter, closed}, timeout=OPEN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            closed.cancel()
        if not self._pong.is_set():
            raise self._closed_error()

    async def _reader_done(self) -> None:
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def aclose(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.rest.aclose()

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                frame = decode(raw)
                if not isinstance(frame, dict):
                    continue
                kind = frame.get("type")
                if kind == "ping":
                    await self._send({"type": "pong"})
                elif kind == "pong":
                    self._pong.set()
                else:
                    self._queue.put_nowait(frame)
        except (ConnectionClosed, ClientError):
            pass
        finally:
            self._queue.put_nowait(_CLOSED)

    def _closed_error(self) -> ClientError:
        code = getattr(self._ws, "close_code", None)
        reason = getattr(self._ws, "close_reason", None) or "no reason given"
        if code == 1008:
            return refused(self.state.url, reason, self.state.token)
        if code is None and self._reader is not None and not self._reader.done():
            return ClientError(
                f"{self.url} did not answer a ping in {OPEN_TIMEOUT:.0f} s", fatal=True
            )
        return ClientError(f"the server closed the connection (code {code}: {reason})")

    async def _send(self, frame: Frame) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(encode(frame))
        except ConnectionClosed:
            raise self._closed_error() from None

    async def _ensure_open(self) -> None:
        """Reconnect when the socket went away between turns (the thread is on the server)."""
        if self._ws is None or (self._reader is not None and self._reader.done()):
            await self.aclose_socket()
            await self.open()

    async def aclose_socket(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = None

    # ---- turns -----------------------------------------------------------------------------
    def _payload(self, text: str) -> Frame:
        state = self.state
        payload: Frame = {"type": "message", "role": "user", "content": text}
        optional = {
            "thread_id": state.thread_id,
            "model": state.model,
            "provider": state.provider,
            "tools": state.tools,
            "workflow_id": state.workflow_id,
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        return payload

    async def turn(self, text: str) -> AsyncIterator[Frame]:
        """Send one message; yield the turn's frames up to the closing `done` chunk."""
        await self._ensure_open()
        while not self._queue.empty():  # leftovers of an abandoned turn
            if self._queue.get_nowait() is _CLOSED:
                await self._ensure_open()
        self.final = None
        await self._send(self._payload(text))
        grace: float | None = None
        while True:
            try:
                frame = await asyncio.wait_for(self._queue.get(), timeout=grace)
            except TimeoutError:
                return
            if frame is _CLOSED:
                self._queue.put_nowait(_CLOSED)
                raise self._closed_error()
            thread_id = frame.get("thread_id")
            if thread_id:
                self.state.thread_id = str(thread_id)
            kind = frame.get("type")
            if kind == "tool_call" and frame.get("target") == "client":
                await self._decline_client_tool(frame)
            elif kind == "message" and frame.get("role") == "assistant":
                self.final = frame
            yield frame
            if kind == "chunk" and frame.get("done"):
                return
            if kind == "error":
                # a rejected frame has no turn (and no closing chunk); a failed turn ends soon
                grace = ERROR_GRACE if thread_id else 0.2

    async def _decline_client_tool(self, frame: Frame) -> None:
        """This client registers no tools; answer at once instead of letting the model wait."""
        await self._send(
            {
                "type": "tool_result",
                "tool_call_id": frame.get("tool_call_id"),
                "ok": False,
                "error": "nodetool chat does not run client-side tools",
            }
        )

    async def stop(self) -> bool:
        await self._send({"type": "stop"})
        return True

    # ---- server-side state -----------------------------------------------------------------
    def new_conversation(self) -> None:
        self.state.thread_id = None

    async def models(self) -> list[str]:
        return await self.rest.models()

    async def threads(self) -> list[Frame]:
        return await self.rest.threads()

    async def thread_info(self) -> Frame | None:
        """The current thread (`GET /api/threads/{id}`); None when it does not exist (yet)."""
        if not self.state.thread_id:
            return None
        return await self.rest.get(f"/api/threads/{quote(self.state.thread_id, safe='')}")

    async def history(self) -> list[Frame]:
        if not self.state.thread_id:
            return []
        return await self.rest.messages(self.state.thread_id) or []
