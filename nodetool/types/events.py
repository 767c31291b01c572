"""Typed stream events.

Provider events (what a ChatProvider yields) and chat events (what the chat engine yields to
the edges: OpenAI SSE, /chat frames, terminal); job events are in `types/jobs.py`. Plain
slotted dataclasses: they are created per streamed chunk, so they stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nodetool.types.jobs import JobUpdate, NodeProgress, NodeUpdate, OutputUpdate
from nodetool.types.messages import Message, ToolCall

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


# ---- provider events -------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A tool-call fragment keyed by `index`: `id`/`name` on the first, `arguments` pieces after.

    Providers that produce complete calls emit one delta carrying everything.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Finish:
    reason: FinishReason = "stop"


@dataclass(slots=True)
class TokenLogprobs:
    """Log probabilities of tokens just streamed, in OpenAI's chat shape: one dict per token,
    `{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}`.

    Yielded only when `ChatOptions.logprobs` is set, next to the TextDelta(s) of those tokens.
    """

    content: list[dict[str, Any]]


ProviderEvent = TextDelta | ToolCallDelta | Usage | Finish | TokenLogprobs


# ---- chat engine events ----------------------------------------------------------------


@dataclass(slots=True)
class ToolCallStarted:
    """A tool is about to run: on the server, or (target "client") by the client."""

    call: ToolCall
    args: dict[str, Any]
    target: Literal["server", "client"] = "server"


@dataclass(slots=True)
class ToolResultEvent:
    tool_call_id: str
    name: str
    ok: bool
    result: Any = None
    error: str | None = None


@dataclass(slots=True)
class MessageEvent:
    """A message the turn produced (assistant tool-call message, tool message, final answer)."""

    message: Message
    model: str | None = None
    provider: str | None = None
    record: dict[str, Any] | None = None  # the persisted record, when persistence is on


@dataclass(slots=True)
class Done:
    """The turn ended (normally, stopped or failed)."""

    finish_reason: FinishReason | None = "stop"
    usage: Usage | None = None
    stopped: bool = False


ChatEvent = (
    TextDelta
    | TokenLogprobs
    | ToolCallDelta
    | ToolCallStarted
    | ToolResultEvent
    | MessageEvent
    | JobUpdate
    | NodeUpdate
    | NodeProgress
    | OutputUpdate
    | Done
)
"""What the chat engine (and a `/chat` workflow turn, which relays its job's events) yields.
Failures are exceptions, never events; usage is totalled on `Done`."""
