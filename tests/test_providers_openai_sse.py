"""The OpenAI SSE parser: its fast path for plain content chunks gives exactly the events the
full parse gives, whatever the chunks hold and however the body is split into pieces."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from nodetool.errors import ProviderError
from nodetool.providers.openai_events import FINISH, SSEParser
from nodetool.types.events import (
    Finish,
    ProviderEvent,
    TextDelta,
    TokenLogprobs,
    ToolCallDelta,
    Usage,
)

TEXTS = [
    "hi",
    "",
    'a"b',
    "back\\slash\\",
    '\\"',
    "é ✓ 😀",
    "new\nline",
    "\x01",
    '"content":x',
    "q\\",
]


def line(delta: Any, finish: str | None = None, compact: bool = True, **extra: Any) -> str:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    body.update(extra)
    separators = (",", ":") if compact else (", ", ": ")
    return "data: " + json.dumps(body, separators=separators, ensure_ascii=not compact)


def reference(body: bytes) -> list[Any]:
    """The events by the plain rules: every `data:` line parsed as JSON, every field read."""
    events: list[Any] = []
    finish = usage = None
    tools = done = False
    for raw in body.split(b"\n"):
        if not raw.startswith(b"data:"):
            continue
        payload = raw[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        data = orjson.loads(payload)
        usage = data.get("usage") or usage
        choices = data.get("choices")
        if not choices:
            if data.get("error"):
                return [*events, "error"]
            continue
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            if delta.get("content"):
                events.append(TextDelta(delta["content"]))
            logprobs = choice.get("logprobs")
            if logprobs and logprobs.get("content"):
                events.append(TokenLogprobs(logprobs["content"]))
            for call in delta.get("tool_calls") or ():
                tools = True
                function = call.get("function") or {}
                events.append(
                    ToolCallDelta(
                        call.get("index", 0),
                        call.get("id"),
                        function.get("name"),
                        function.get("arguments") or "",
                    )
                )
        if choice.get("finish_reason"):
            finish = FINISH.get(choice["finish_reason"], "stop")
    if not done and finish is None:  # the upstream closed the stream before it finished
        return [*events, "error"]
    if usage:
        events.append(Usage(usage["prompt_tokens"], usage["completion_tokens"]))
    return [*events, Finish(finish or ("tool_calls" if tools else "stop"))]


def parse(body: bytes, cuts: list[int]) -> list[Any]:
    parser = SSEParser("openai", lambda error: ProviderError(str(error), provider="openai"))
    events: list[ProviderEvent | str] = []
    start = 0
    try:
        for cut in [*cuts, len(body)]:
            events += parser.feed(body[start:cut])
            start = cut
        return events + parser.end()
    except ProviderError:
        return [*events, "error"]


def sse(lines: list[str], eol: str = "\n") -> bytes:
    return "".join(text + eol + eol for text in lines).encode()


def variants() -> list[list[str]]:
    plain = [line({"content": text}) for text in TEXTS]
    return [
        plain + [line({}, "stop"), "data: [DONE]"],
        [line({"role": "assistant", "content": ""}), *plain, line({}, "length")],
        [*plain[:3], line({"content": "x"}, logprobs={"content": [{"token": "x"}]}), *plain],
        [*plain[:2], line({"content": "x"}, "stop"), *plain[2:]],
        [*plain[:2], line({"content": "y"}, usage={"prompt_tokens": 1, "completion_tokens": 2})],
        [
            *plain[:2],
            line({"content": "z", "tool_calls": [{"index": 0, "id": "c", "function": {}}]}),
        ],
        [*plain[:2], line({"content": "other id"}, id="c2"), *plain[2:]],
        [*plain[:2], line({"content": "obfuscated"}, obfuscation="xy"), *plain[2:]],
        [*plain[:2], 'data: {"choices":[],"error":{"message":"boom"}}', *plain[2:]],
        [*(line({"content": t}, compact=False) for t in TEXTS), line({}, "stop")],
        [plain[0], plain[0].replace('"content":"hi"', '"content":"a","x":1'), line({}, "stop")],
        [plain[0], plain[0].replace('"content":"hi"', '"content":"a\\u0001b"'), "data: [DONE]"],
        [plain[0], plain[0].replace('"hi"', '"hi","content":"dup"'), *plain[1:], "data: [DONE]"],
        [plain[0], ": comment", "event: x", *plain[1:], "data: [DONE]", plain[0]],
        [*plain, "x" + plain[1], *plain, plain[2] + " ", *plain, line({}, "stop")],
        [*plain, plain[1].replace("data: ", "data:"), *plain, "data: [DONE]", *plain],
    ]


def same(got: list[Any], expected: list[Any]) -> bool:
    """Equal; on failure, the events before it may stop at any piece boundary before it."""
    if expected[-1] != "error":
        return got == expected
    return got[-1] == "error" and got[:-1] == expected[: len(got) - 1]


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("case", range(len(variants())))
def test_every_split_gives_the_plain_rules_events(case: int, eol: str) -> None:
    body = sse(variants()[case], eol)
    expected = reference(body)
    assert same(parse(body, []), expected)
    for cut in range(1, len(body)):
        assert same(parse(body, [cut]), expected), cut
    assert same(parse(body, list(range(1, len(body)))), expected)


def test_the_template_serves_plain_chunks_only() -> None:
    parser = SSEParser("openai", lambda error: ProviderError(str(error)))
    parser.feed(sse([line({"role": "assistant", "content": ""}), line({"content": "a"})]))
    assert parser.prefix.endswith(b'"delta":{"content":')
    assert parser.suffix == b'},"finish_reason":null}]}'


def test_an_escape_json_refuses_is_a_value_error_after_a_run_too() -> None:
    plain = [line({"content": text}) for text in TEXTS]
    body = sse([*plain, plain[0].replace('"hi"', '"h\\qi"'), *plain])
    for cuts in ([], [len(body) // 2], [len(sse(plain[:3]))]):
        with pytest.raises(ValueError):
            parse(body, cuts)


def test_invalid_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse(sse([line({"content": "a"}), 'data: {"choices":[{"delta":{"content":"b"}}']), [])
