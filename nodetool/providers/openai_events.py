"""An OpenAI-compatible upstream's answers as provider events: a whole `chat.completion`, or
the SSE body of a streamed one, parsed piece by piece as it arrives.

The stream parser has a fast path for the common chunk, a plain content delta: the first such
line (all other fields empty) becomes a template, its bytes before and after the content's JSON
string. A later line with the same bytes around a valid JSON string is that chunk with other
text, so only the string is decoded. Anything else (logprobs, tool calls, usage, finish
reasons, errors, another id) takes the full path: the line parsed as JSON, every field read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

from nodetool.errors import ProviderError
from nodetool.types.events import (
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
)

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_KEY = b'"content":'
_STRING = re.compile(rb'[ \t\r\n]*("(?:[^"\\]|\\.)*")', re.DOTALL)  # a JSON string token
_MARK = b'"\\u0001"'  # a content value the template check puts in


def completion_events(data: Any) -> list[ProviderEvent]:
    """A non-streaming `chat.completion` as the events its stream would have produced."""
    choices = data.get("choices")
    if not choices:
        raise ValueError("the completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    events: list[ProviderEvent] = []
    content = message.get("content")
    if content:
        events.append(TextDelta(content if isinstance(content, str) else json.dumps(content)))
    logprobs = (choice.get("logprobs") or {}).get("content")
    if logprobs:
        events.append(TokenLogprobs(logprobs))
    calls = message.get("tool_calls") or ()
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        events.append(ToolCallDelta(index, call.get("id"), function.get("name"), arguments))
    usage = data.get("usage")
    if usage:
        events.append(
            Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        )
    reason = choice.get("finish_reason")
    events.append(
        Finish(FINISH.get(reason, "stop") if reason else ("tool_calls" if calls else "stop"))
    )
    return events


class SSEParser:
    """Turns the SSE body of a streaming completion into provider events, piece by piece.

    `name` is the provider's (for errors); `stream_error` makes the exception for an `error`
    object sent mid-stream."""

    __slots__ = (
        "name",
        "stream_error",
        "pending",
        "finish",
        "usage",
        "saw_tools",
        "done",
        "prefix",
        "suffix",
        "templated",
    )

    def __init__(self, name: str, stream_error: Callable[[Any], Exception]) -> None:
        self.name = name
        self.stream_error = stream_error
        self.pending = b""
        self.finish: FinishReason | None = None
        self.usage: dict[str, Any] | None = None
        self.saw_tools = self.done = False
        self.prefix = self.suffix = b"\n"  # no line starts with LF: nothing matches yet
        self.templated = False

    def feed(self, chunk: bytes) -> list[ProviderEvent]:
        """The events completed by `chunk` (lines are split on LF; CR is stripped)."""
        lines = (self.pending + chunk if self.pending else chunk).split(b"\n")
        self.pending = lines.pop()
        events: list[ProviderEvent] = []
        if self.done:
            return events
        loads = orjson.loads
        prefix, suffix = self.prefix, self.suffix
        start, end = len(prefix), -len(suffix)
        for line in lines:
            if not line:
                continue
            if line.startswith(prefix) and line.endswith(suffix):
                try:
                    text = loads(line[start:end])
                except ValueError:
                    text = None
                if type(text) is str:  # the template's chunk with this text
                    if text:
                        events.append(TextDelta(text))
                    continue
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            self._event(loads(payload), line, events)  # invalid JSON: a ValueError
            prefix, suffix = self.prefix, self.suffix
            start, end = len(prefix), -len(suffix)
        return events

    def _event(self, data: Any, line: bytes, events: list[ProviderEvent]) -> None:
        """One parsed chunk: its events appended, its usage and finish reason kept."""
        usage = data.get("usage")
        if usage:
            self.usage = usage
        choices = data.get("choices")
        if not choices:
            if data.get("error"):
                raise self.stream_error(data["error"])
            return
        choice = choices[0]
        delta = choice.get("delta")
        content = calls = logprobs = None
        if delta:
            content = delta.get("content")
            if content:
                events.append(TextDelta(content))
            logprobs = choice.get("logprobs")
            if logprobs:
                logprobs = logprobs.get("content")
                if logprobs:
                    events.append(TokenLogprobs(logprobs))
            calls = delta.get("tool_calls")
            if calls:
                self.saw_tools = True
                for call in calls:
                    function = call.get("function") or {}
                    events.append(
                        ToolCallDelta(
                            call.get("index", 0),
                            call.get("id"),
                            function.get("name"),
                            function.get("arguments") or "",
                        )
                    )
        reason = choice.get("finish_reason")
        if reason:
            self.finish = FINISH.get(reason, "stop")
        elif (
            content and type(content) is str and not (self.templated or usage or logprobs or calls)
        ):
            self._template(data, line)

    def _template(self, data: dict[str, Any], line: bytes) -> None:
        """Learn the fast path's template from a plain content chunk (its only key "content":
        with the text swapped for a marker, the line must parse to the same chunk)."""
        self.templated = True  # one try per stream
        at = line.find(_KEY)
        if at < 0 or line.find(_KEY, at + 1) >= 0:
            return
        value = _STRING.match(line, at + len(_KEY))
        if value is None:
            return
        prefix, suffix = line[: value.start(1)], line[value.end(1) :]
        if not prefix.startswith(b"data:") or not suffix:
            return
        try:
            marked = orjson.loads(prefix[5:] + _MARK + suffix)
            marked["choices"][0]["delta"]["content"] = data["choices"][0]["delta"]["content"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return
        if marked == data:
            self.prefix, self.suffix = prefix, suffix

    def end(self) -> list[ProviderEvent]:
        """Usage (if sent) and Finish, once the body ended; an unfinished stream is an error."""
        if not self.done and self.finish is None:
            name = self.name
            raise ProviderError(
                f"{name} upstream closed the stream before it finished", provider=name
            )
        events: list[ProviderEvent] = []
        usage = self.usage
        if usage:
            events.append(
                Usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            )
        events.append(Finish(self.finish or ("tool_calls" if self.saw_tools else "stop")))
        return events
