"""Shared client pieces: the chat state, the connection protocol and one-line errors.

Both transports yield frames in the `/chat` vocabulary (docs/protocol.md §4: `chunk`, `tool_call`,
`tool_result`, `message`, `job_update`, ...), so one renderer serves both.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_URL = "http://127.0.0.1:8000"
SHORT = 240  # characters of a one-line preview
TOKEN_ENV = "NODETOOL_API_KEY"

Frame = dict[str, Any]


@dataclass
class ChatState:
    """What the next message is sent with; slash commands change it."""

    url: str = DEFAULT_URL
    token: str | None = None
    model: str | None = None
    provider: str | None = None
    tools: list[str] | None = None
    workflow_id: str | None = None
    thread_id: str | None = None


class ClientError(Exception):
    """A failure shown as one line, never a traceback; `code` is the exit status.

    `fatal`: the server cannot be used at all (unreachable, token refused).
    """

    def __init__(self, message: str, code: int = 1, fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fatal = fatal


class Connection(Protocol):
    """A transport to a nodetool server (`http.HttpConnection`, `ws.WsConnection`)."""

    state: ChatState
    transport: str  # "http" | "ws"
    final: Frame | None  # the last turn's final assistant message (for --json)

    async def open(self, check: bool = True) -> None:
        """Connect; with `check`, prove the server answers and accepts the token."""
        ...

    async def aclose(self) -> None: ...

    def turn(self, text: str) -> AsyncIterator[Frame]: ...

    async def stop(self) -> bool:
        """Ask the running turn to stop; True when the server ends the turn itself."""
        ...

    async def models(self) -> list[str]: ...

    async def thread_info(self) -> Frame | None: ...

    async def history(self) -> list[Frame]: ...

    async def threads(self) -> list[Frame]: ...

    def new_conversation(self) -> None: ...


# ---- one-line errors -------------------------------------------------------------------------


def root_cause(exc: BaseException) -> str:
    """A short human cause for a connection failure ("connection refused", "unknown host")."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        current = current.__cause__ or current.__context__
    for item in reversed(chain):  # the innermost message is the most specific
        text = str(item).strip().rstrip(".")
        if text:
            return "connection refused" if "refused" in text.lower() else text
    return type(exc).__name__


def unreachable(url: str, exc: BaseException) -> ClientError:
    return ClientError(
        f"cannot reach {url} ({root_cause(exc)}); start a server with `nodetool serve` "
        "or pass --url",
        fatal=True,
    )


def refused(url: str, detail: str, token: str | None) -> ClientError:
    hint = (
        "check --token or NODETOOL_API_KEY (`nodetool token` prints the server's token)"
        if token
        else "this server needs a token: pass --token or set NODETOOL_API_KEY"
    )
    return ClientError(f"{url} refused the token ({detail}); {hint}", fatal=True)


def server_message(body: Any, fallback: str) -> str:
    """The message of an OpenAI error envelope (or a plain `detail`/text body)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail"):
                if isinstance(error.get(key), str) and error[key]:
                    return error[key]
        elif isinstance(error, str) and error:
            return error
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return fallback


def split_names(raw: str) -> list[str]:
    """`"a, b c"` → `["a", "b", "c"]` (commas and/or spaces)."""
    return [name for name in raw.replace(",", " ").split() if name]


def message_text(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return str(content)


def short(value: Any, limit: int = SHORT) -> str:
    """A one-line preview of a value (JSON for structures)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
