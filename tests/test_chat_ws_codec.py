"""The frame codec (shared by /chat and /predict) and the chat session's pure helpers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import msgpack
import pytest

from nodetool.api.ws_codec import FrameCodec, FrameError, FrameTooLarge
from nodetool.chat.session import feed_text, history_messages, results_text


def test_replies_are_msgpack_before_any_frame() -> None:
    codec = FrameCodec(1024)
    message = codec.encode({"type": "pong", "data": b"\x00\xff"})
    assert msgpack.unpackb(message["bytes"], raw=False) == {"type": "pong", "data": b"\x00\xff"}


def test_encoding_follows_the_latest_frame() -> None:
    codec = FrameCodec(1024)
    assert codec.decode({"type": "websocket.receive", "text": '{"type": "ping"}'}) == {
        "type": "ping"
    }
    assert "text" in codec.encode({"type": "pong"})
    codec.decode({"type": "websocket.receive", "bytes": msgpack.packb({"type": "ping"})})
    assert "bytes" in codec.encode({"type": "pong"})


def test_bytes_are_base64_in_json_mode() -> None:
    codec = FrameCodec(1024)
    codec.decode({"type": "websocket.receive", "text": "{}"})
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    text = codec.encode({"blob": b"\x00\x01binary", "nested": [{"b": bytearray(b"ab")}], "t": when})
    frame = json.loads(text["text"])
    assert base64.b64decode(frame["blob"]) == b"\x00\x01binary"
    assert base64.b64decode(frame["nested"][0]["b"]) == b"ab"
    assert frame["t"] == when.isoformat()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"bytes": b"\xc1"}, "invalid_msgpack"),
        ({"bytes": msgpack.packb([1])}, "invalid_frame"),
        ({"bytes": msgpack.packb({1: "int key"})}, "invalid_msgpack"),
        ({"text": "{oops"}, "invalid_json"),
        ({"text": "42"}, "invalid_frame"),
        ({}, "invalid_frame"),
    ],
)
def test_bad_frames_are_frame_errors(message, code) -> None:
    with pytest.raises(FrameError) as error:
        FrameCodec(1024).decode({"type": "websocket.receive", **message})
    assert error.value.code == code
    assert error.value.frame()["type"] == "error"


@pytest.mark.parametrize(
    "message",
    [{"bytes": msgpack.packb({"pad": "x" * 2000})}, {"text": json.dumps({"pad": "é" * 600})}],
)
def test_frames_over_the_limit(message) -> None:
    with pytest.raises(FrameTooLarge):
        FrameCodec(1024).decode({"type": "websocket.receive", **message})


def _record(role: str, **fields) -> dict:
    return {"role": role, "content": None, "tool_calls": None, "tool_call_id": None, **fields}


def _call(call_id: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_history_keeps_tool_calls_paired() -> None:
    records = [
        _record("tool", content="orphan result", tool_call_id="gone"),  # its call fell out
        _record("user", content="hi"),
        _record("assistant", tool_calls=[_call("a"), _call("b")]),
        _record("tool", content="ra", tool_call_id="a"),
        _record("assistant", content="done"),
        _record("user", content="again"),
        _record("assistant", tool_calls=[_call("c")]),  # stopped before its result
        _record("assistant", content="partial"),
    ]
    messages = history_messages(records)
    roles = [m.role for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert [c.id for c in messages[1].tool_calls] == ["a"]
    assert messages[-1].content == "partial" and messages[-1].tool_calls is None


GRAPH = {
    "nodes": [
        {"id": "n1", "type": "nodetool.input.IntegerInput", "data": {"name": "count"}},
        {"id": "n2", "type": "nodetool.input.StringInput", "data": {"name": "topic"}},
        {"id": "n3", "type": "nodetool.input.StringInput", "data": {"name": "style"}},
        {"id": "n4", "type": "nodetool.output.StringOutput", "data": {"name": "out"}},
    ]
}


def test_feed_text_picks_the_first_free_text_input() -> None:
    assert feed_text(GRAPH, None, "cats") == {"topic": "cats"}
    assert feed_text(GRAPH, {"topic": "dogs"}, "cats") == {"topic": "dogs", "style": "cats"}


def test_feed_text_honours_params_names() -> None:
    assert feed_text(GRAPH, {"style": None, "count": 2}, "terse") == {"style": "terse", "count": 2}


def test_feed_text_prefers_message_inputs() -> None:
    graph = {"nodes": GRAPH["nodes"] + [{"id": "m", "type": "nodetool.input.ChatInput"}]}
    assert feed_text(graph, None, "hello") == {"m": "hello"}


def test_results_text() -> None:
    assert results_text({"answer": "42"}) == "42"
    assert results_text({"a": "x", "b": [1, 2]}) == "a: x\nb: [1, 2]"
    assert results_text(None) == ""
