"""WebSocket frame codec shared by `/chat` and `/predict` (docs/protocol.md §4, §5).

A binary frame is MessagePack, a text frame is JSON; each must decode to a map. Replies use the
encoding of the client's most recent frame (MessagePack before any frame arrived). In JSON mode
bytes are sent base64-encoded, never dropped. A frame over the size limit closes the socket with
1009; any other bad frame is reported as a `FrameError` value so the caller can answer with an
`error` frame and keep the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import msgpack
from starlette.websockets import WebSocket, WebSocketDisconnect

from nodetool.api.json_encoding import compact_json, plain
from nodetool.storage.large_json import json_is_large

log = logging.getLogger("nodetool.ws")

CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
MAX_DEPTH = 128  # nesting of maps and arrays in one frame


class FrameError(Exception):
    """A frame that cannot be decoded or is not a map; answered with an `error` frame."""

    def __init__(self, message: str, code: str = "invalid_frame") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def frame(self) -> dict[str, Any]:
        return {"type": "error", "message": self.message, "code": self.code}


class FrameTooLarge(Exception):
    """A frame over the size limit; the connection must be closed with 1009."""


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return plain(value)


def _too_deep() -> FrameError:
    return FrameError(f"frame is nested too deeply (limit {MAX_DEPTH} levels)", "too_deep")


def _check_depth(value: Any) -> None:
    """Refuse frames nested deeper than MAX_DEPTH (iteratively: no recursion here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(item, dict):
            stack.extend(
                (child, depth + 1) for child in item.values() if isinstance(child, dict | list)
            )
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))


class FrameCodec:
    """Per-connection codec state: the reply encoding and the size limit."""

    __slots__ = ("binary", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.binary = True
        self.max_bytes = max_bytes

    def decode(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Decode one ASGI `websocket.receive` message to a dict.

        Switches the reply encoding to the frame's. Raises `FrameTooLarge` or `FrameError`.
        """
        data = message.get("bytes")
        if data is not None:
            self.binary = True
            if len(data) > self.max_bytes:
                raise FrameTooLarge(f"frame of {len(data)} bytes exceeds {self.max_bytes}")
            return self._decode_msgpack(data)
        text = message.get("text")
        if text is None:
            raise FrameError("empty frame")
        self.binary = False
        if len(text) * 4 > self.max_bytes and len(text.encode()) > self.max_bytes:
            raise FrameTooLarge(f"frame exceeds {self.max_bytes} bytes")
        return self._decode_json(text)

    @staticmethod
    def _decode_msgpack(data: bytes) -> dict[str, Any]:
        try:
            value = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise FrameError(f"invalid MessagePack frame: {exc}", "invalid_msgpack") from None
        if not isinstance(value, dict):
            raise FrameError(
                f"a MessagePack frame must be a map, got {type(value).__name__}", "invalid_frame"
            )
        _check_depth(value)
        return value

    @staticmethod
    def _decode_json(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise FrameError(f"invalid JSON frame: {exc}", "invalid_json") from None
        except RecursionError:
            raise _too_deep() from None
        if not isinstance(value, dict):
            raise FrameError(
                f"a JSON frame must be an object, got {type(value).__name__}", "invalid_frame"
            )
        _check_depth(value)
        return value

    def encode(self, frame: Mapping[str, Any]) -> dict[str, Any]:
        """The ASGI `websocket.send` message for `frame` in the current encoding."""
        if self.binary:
            data = msgpack.packb(frame, default=_msgpack_default, use_bin_type=True)
            return {"type": "websocket.send", "bytes": data}
        text = compact_json(frame)
        return {"type": "websocket.send", "text": text}


class FrameSocket:
    """An accepted WebSocket that speaks frames: decoded receives, serialised encoded sends.

    Sends from several tasks (turn, heartbeat, receive loop) are serialised by a lock; once the
    peer is gone, `send` returns False instead of raising.
    """

    def __init__(self, websocket: WebSocket, max_bytes: int) -> None:
        self.websocket = websocket
        self.codec = FrameCodec(max_bytes)
        self.closed = False
        self._lock = asyncio.Lock()

    async def receive(self) -> dict[str, Any] | FrameError:
        """The next frame, or the `FrameError` describing why it is bad.

        Raises `WebSocketDisconnect` when the peer left, or after closing with 1009 for a frame
        over the limit.
        """
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        try:
            return self.codec.decode(message)
        except FrameError as exc:
            return exc
        except FrameTooLarge as exc:
            await self.close(CLOSE_TOO_BIG, "frame too large")
            raise WebSocketDisconnect(CLOSE_TOO_BIG, str(exc)) from None

    async def send(self, frame: Mapping[str, Any]) -> bool:
        """Send one frame in the client's encoding; False when the connection is gone."""
        if self.closed:
            return False
        if json_is_large(frame):  # e.g. a job's megabytes of results: encoded in a thread
            message = await asyncio.to_thread(self.codec.encode, frame)
        else:
            message = self.codec.encode(frame)
        async with self._lock:
            if self.closed:
                return False
            try:
                await self.websocket.send(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True
                return False
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(code=code, reason=reason)
