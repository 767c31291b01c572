"""HTTP transport: the official `openai` SDK streaming against `URL/v1`.

The conversation lives in the client (`messages`). Server tools (`nodetool serve --tools`) run
inside the server's turn and are invisible here, so tool choices need the WebSocket transport.
Stopping a reply cancels the consuming task; the stream is closed on the way out, which the
server sees as the client going away (and cancels upstream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from nodetool.client.base import (
    ChatState,
    ClientError,
    Frame,
    message_text,
    refused,
    root_cause,
    server_message,
    unreachable,
)

WS_ONLY = "needs --ws: in HTTP mode the conversation is kept in this client, not on the server"


class HttpConnection:
    """OpenAI-compatible chat over `/v1/chat/completions` (stream=True)."""

    transport = "http"

    def __init__(self, state: ChatState) -> None:
        from openai import AsyncOpenAI, omit

        self.state = state
        self.base_url = state.url.rstrip("/") + "/v1"
        self.client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=state.token or "unused",  # the SDK insists on a key...
            max_retries=0,
            timeout=600.0,
        )
        # ...but without a token no Authorization header is sent at all
        self.headers: Any = None if state.token else {"Authorization": omit}
        self.messages: list[dict[str, Any]] = []
        self.final: Frame | None = None

    async def open(self, check: bool = True) -> None:
        """With `check`, prove the server answers and accepts the token (lists the models)."""
        if check:
            await self.models()

    async def aclose(self) -> None:
        await self.client.close()

    def new_conversation(self) -> None:
        self.messages.clear()

    async def stop(self) -> bool:
        return False  # the caller cancels the stream

    async def models(self) -> list[str]:
        try:
            page = await self.client.models.list(extra_headers=self.headers)
        except Exception as exc:
            raise self._error(exc) from None
        return [model.id for model in page.data]

    async def history(self) -> list[Frame]:
        return history_frames(self.messages)

    async def thread_info(self) -> Frame | None:
        return None

    async def threads(self) -> list[Frame]:
        raise ClientError(f"/threads {WS_ONLY}")

    async def turn(self, text: str) -> AsyncIterator[Frame]:
        """Send `text` with the conversation so far; yield chunk frames, then the message."""
        from openai import omit

        self.final = None
        self.messages.append({"role": "user", "content": text})
        extra = {"provider": self.state.provider} if self.state.provider else None
        try:
            stream = await self.client.chat.completions.create(
                model=self.state.model or omit,
                messages=list(self.messages),
                stream=True,
                stream_options={"include_usage": True},
                extra_body=extra,
                extra_headers=self.headers,
            )
        except Exception as exc:
            self.messages.pop()
            raise self._error(exc) from None
        parts: list[str] = []
        reply: Frame = {"role": "assistant", "content": ""}
        completed = failed = False
        try:
            async for chunk in stream:
                if chunk.choices:
                    choice = chunk.choices[0]
                    content = choice.delta.content if choice.delta else None
                    if content:
                        parts.append(content)
                        yield {"type": "chunk", "content": content, "done": False}
                    if choice.finish_reason:
                        reply["finish_reason"] = choice.finish_reason
                reply.setdefault("id", chunk.id)
                if chunk.model:
                    reply["model"] = chunk.model
                if chunk.usage is not None:
                    reply["usage"] = chunk.usage.model_dump(exclude_none=True)
            completed = True
        except Exception as exc:
            failed = True
            raise self._error(exc, streaming=True) from None
        finally:
            await stream.close()
            reply["content"] = "".join(parts)
            if not failed and (parts or completed):
                # a stopped reply keeps its partial text, as the server keeps it on /chat
                self.messages.append({"role": "assistant", "content": reply["content"]})
            else:
                self.messages.pop()
        self.final = reply
        yield {"type": "message", **reply}
        yield {"type": "chunk", "content": "", "done": True}

    def _error(self, exc: Exception, streaming: bool = False) -> ClientError:
        import openai

        url = self.state.url
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                return ClientError(f"the connection to {url} broke mid-reply ({root_cause(exc)})")
            return unreachable(url, exc)
        if isinstance(exc, openai.AuthenticationError):
            return refused(url, f"401: {server_message(exc.body, exc.message)}", self.state.token)
        if isinstance(exc, openai.APIStatusError):
            detail = server_message(exc.body, exc.message)
            if exc.status_code == 404 and "/v1" not in detail:
                detail += f" (is {url} a nodetool server?)"
            return ClientError(f"server error {exc.status_code}: {detail}")
        if isinstance(exc, openai.APIError):
            return ClientError(f"server error: {server_message(exc.body, exc.message)}")
        return ClientError(f"{type(exc).__name__}: {exc}")


def history_frames(messages: list[dict[str, Any]]) -> list[Frame]:
    """Client-side messages as message frames (for /history)."""
    return [
        {"type": "message", "role": m["role"], "content": message_text(m.get("content"))}
        for m in messages
    ]
