"""Slash-command parsing and the pure pieces of the client (errors, frames, rendering)."""

from __future__ import annotations

import io
import socket

import pytest
from rich.console import Console

from nodetool.client.base import root_cause, server_message, split_names
from nodetool.client.commands import COMMANDS, Command, Text, Unknown, parse
from nodetool.client.job_view import JobView
from nodetool.client.render import PlainView, TerminalView, paragraph_boundary
from nodetool.client.ws import decode, encode, ws_url


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/help", Command("help")),
        ("  /models  ", Command("models")),
        ("/model GPT-4o-Mini", Command("model", "GPT-4o-Mini")),
        ("/MODEL Llama3.2:1B", Command("model", "Llama3.2:1B")),
        ("/provider  OpenAI ", Command("provider", "OpenAI")),
        ("/tools calculator, http_get", Command("tools", "calculator, http_get")),
        ("/tools", Command("tools")),
        ("/thread 01ABCdef", Command("thread", "01ABCdef")),
        ("/threads", Command("threads")),
        ("/new", Command("new")),
        ("/clear", Command("clear")),
        ("/history", Command("history")),
        ("/workflow My-Flow", Command("workflow", "My-Flow")),
        ("/exit", Command("exit")),
        ("/quit", Command("exit")),
        ("/?", Command("help")),
    ],
)
def test_known_commands(line: str, expected: Command) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    ("line", "word"),
    [("/foo", "/foo"), ("/Models2 x", "/Models2"), ("/exitnow", "/exitnow")],
)
def test_unknown_commands_are_never_sent(line: str, word: str) -> None:
    assert parse(line) == Unknown(word)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("hello /help", "hello /help"),
        ("/ not a command", "/ not a command"),
        ("/etc/hosts is a file", "/etc/hosts is a file"),
        ("/123", "/123"),
        ("//help me", "/help me"),
        ("/help\nsecond line", "/help\nsecond line"),
        ("  What does /model do?  ", "What does /model do?"),
    ],
)
def test_ordinary_text(line: str, text: str) -> None:
    assert parse(line) == Text(text)


def test_every_command_has_usage_and_help() -> None:
    for name, (usage, description) in COMMANDS.items():
        assert usage.startswith(f"/{name}") and description


def test_split_names() -> None:
    assert split_names("a, b  c,,d") == ["a", "b", "c", "d"]
    assert split_names(" ") == []


def test_server_message_reads_the_envelope() -> None:
    assert server_message({"error": {"message": "bad model"}}, "x") == "bad model"
    assert server_message({"detail": "nope"}, "x") == "nope"
    assert server_message("plain body", "x") == "plain body"
    assert server_message(None, "fallback") == "fallback"


def test_root_cause_names_refusals_and_dns() -> None:
    try:
        raise RuntimeError("Connection error.") from ConnectionRefusedError(111, "refused")
    except RuntimeError as exc:
        assert root_cause(exc) == "connection refused"
    assert root_cause(socket.gaierror(-2, "Name or service not known")) == "unknown host"
    try:
        raise RuntimeError("outer") from ValueError("peer closed connection")
    except RuntimeError as exc:
        assert root_cause(exc) == "peer closed connection"


def test_ws_url_and_codec() -> None:
    assert ws_url("http://h:1/") == "ws://h:1/chat"
    assert ws_url("https://h/base") == "wss://h/base/chat"
    frame = {"type": "chunk", "content": "é", "done": False, "data": b"\x00"}
    assert decode(encode(frame)) == frame
    assert decode('{"type": "pong"}') == {"type": "pong"}
    assert decode(b"\xc1") is None


def test_paragraph_boundary_skips_code_fences() -> None:
    assert paragraph_boundary("one\n\ntwo") == len("one\n\n")
    assert paragraph_boundary("no break yet") == 0
    text = "intro\n\n```\ncode\n\nmore code\n"
    assert paragraph_boundary(text) == len("intro\n\n")


def test_plain_view_prints_text_and_non_streamed_answers() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = PlainView(out, err)
    view.handle({"type": "chunk", "content": "Hi", "done": False})
    view.handle({"type": "message", "role": "assistant", "content": "Hi"})  # already streamed
    view.handle({"type": "tool_call", "name": "calculator", "args": {}})
    view.handle(
        {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "!"}]}
    )
    view.handle({"type": "chunk", "content": "", "done": True})
    view.handle({"type": "error", "message": "boom"})
    view.end()
    assert out.getvalue() == "Hi!\n"
    assert err.getvalue() == "error: boom\n"
    assert view.errors == ["boom"]


def test_job_view_shows_nodes_progress_and_outputs() -> None:
    job = JobView()
    for frame in [
        {"type": "job_update", "status": "running", "job_id": "j1", "workflow_id": "shout"},
        {"type": "node_update", "node_id": "cat", "node_type": "nodetool.text.Concat"},
        {"type": "node_progress", "node_id": "cat", "progress": 5, "total": 10},
        {"type": "node_update", "node_id": "out", "status": "completed"},
        {"type": "output_update", "node_id": "out", "output_name": "result", "value": "hey!!"},
        {"type": "node_update", "node_id": "bad", "status": "failed", "error": "division by 0"},
        {"type": "job_update", "status": "failed", "error": "node bad failed"},
    ]:
        job.update(frame)
    console = Console(record=True, width=100, color_system=None)
    console.print(job)
    text = console.export_text()
    assert "workflow shout" in text and "failed" in text
    assert "cat Concat" in text and "hey!!" in text and "division by 0" in text


def test_job_view_seeded_nodes_streaming_and_marks() -> None:
    """`nodetool run` seeds the graph's nodes as pending; streamed text is counted."""
    job = JobView([("in", "nodetool.input.IntegerInput"), ("llm", "nodetool.llm.Agent")])
    job.update({"type": "node_update", "node_id": "in", "status": "completed"})
    for piece in ("Hel", "lo"):
        job.update(
            {"type": "output_update", "node_id": "llm", "output_name": "chunk", "value": piece}
        )
    console = Console(record=True, width=100, color_system=None)
    console.print(job)
    lines = console.export_text().splitlines()
    assert any("in IntegerInput" in line and "✓ completed" in line for line in lines), lines
    assert any("llm Agent" in line and "· pending" in line for line in lines), lines
    assert any("streaming: 5 chars" in line for line in lines), lines


def test_terminal_view_renders_panels_markdown_and_errors() -> None:
    console = Console(record=True, width=80, color_system=None, force_terminal=True)
    view = TerminalView(console)
    view.begin()
    for frame in [
        {"type": "chunk", "content": "Let me **compute**.", "done": False},
        {"type": "tool_call", "name": "calculator", "args": {"expression": "2+2"}},
        {"type": "tool_result", "name": "calculator", "ok": True, "result": "4"},
        {"type": "tool_result", "name": "http_get", "ok": False, "error": "blocked"},
        {"type": "chunk", "content": "It is 4.", "done": False},
        {"type": "error", "message": "upstream hiccup"},
        {"type": "generation_stopped"},
    ]:
        view.handle(frame)
    view.end()
    text = console.export_text()
    assert text.index("Let me compute.") < text.index("tool call") < text.index("It is 4.")
    assert 'calculator {"expression": "2+2"}' in text
    assert "calculator ✓" in text and "http_get ✗" in text and "blocked" in text
    assert "error: upstream hiccup" in text
    assert "stopped" in text


def test_terminal_view_keeps_the_live_area_shorter_than_the_screen() -> None:
    console = Console(record=True, width=60, height=12, color_system=None, force_terminal=True)
    view = TerminalView(console, commit_interval=0)
    view.begin()
    full = "".join(f"paragraph {n}\n\n" for n in range(30))
    for piece in full.split(" "):
        view.handle({"type": "chunk", "content": piece + " ", "done": False})
    live_text = "".join(view.parts)
    assert len(live_text) < len(full) // 2
    assert view.text.endswith(live_text)
    view.end()
    text = console.export_text()
    positions = [text.index(f"paragraph {n}") for n in range(30)]
    assert positions == sorted(positions)
