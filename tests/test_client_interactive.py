"""The interactive `nodetool chat`, driven as a real program in a pseudo-terminal (pexpect)."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.client_support import editor, latest_thread, thread_messages
from tests.support.servers import REPO, ServerThread

PROMPT = "you ›"
LONG = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd"
LONG_REPLY = f"[[say:{LONG}]] [[slow:0.3]] [[chunks:40]]"
ANSI = r"(?:\x1b\[[0-9;]*m)*"


def styled(text: str) -> str:
    """A pattern for `text` with any colour/style codes between its characters."""
    return ANSI.join(re.escape(char) for char in text)


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor(openai_stub.url, tmp_path_factory.mktemp("client-pty")) as srv:
        yield srv


def spawn(server: ServerThread, data_dir: Path, *args: str) -> pexpect.spawn:
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "NODETOOL_DATA_DIR": str(data_dir),
        "NODETOOL_API_KEY": "",
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "nodetool", "chat", "--url", server.url, *args],
        env=env,
        cwd=str(REPO),
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("Ctrl-D quits")
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_ws_session(server, openai_stub, tmp_path: Path) -> None:
    child = spawn(server, tmp_path, "--ws", "--model", "stub-model")
    try:
        child.expect(PROMPT)
        # a conversation
        child.sendline("hello pty")
        child.expect("Echo: hello pty")
        child.expect(PROMPT)

        # a server tool call, rendered as panels before the answer
        child.sendline('add [[tool:calculator {"expression": "2+2"}]]')
        child.expect("tool call")
        child.expect(styled('calculator {"expression": "2+2"}'))
        child.expect(styled("calculator ✓"))
        child.expect("Tool results: 4")
        child.expect(PROMPT)

        # /model switching reaches the upstream
        openai_stub.reset()
        child.sendline("/model stub-model-2")
        child.expect("model: stub-model-2")
        child.expect(PROMPT)
        child.sendline("after the switch")
        child.expect("Echo: after the switch")
        child.expect(PROMPT)
        assert openai_stub.requests[-1]["model"] == "stub-model-2"

        # Ctrl-C stops a long reply: the server stops the turn and cancels the upstream
        started = time.monotonic()
        child.sendline(LONG_REPLY)
        child.expect("thinking")  # past the echo of the typed line
        child.expect("ABC")
        child.sendintr()
        child.expect("stopped")
        child.expect(PROMPT)
        assert openai_stub.wait_disconnect(timeout=10, after=started) is not None
        partial = thread_messages(server.url, latest_thread(server.url))[-1]
        assert partial["role"] == "assistant"
        assert partial["content"].startswith("ABC") and partial["content"] != LONG

        # the thread continues after a stop; trailing backslash continues the input
        child.sendline("first line \\")
        child.sendline("second line")
        child.expect("Echo: first line")
        child.expect(PROMPT)
        assert openai_stub.requests[-1]["messages"][-1]["content"] == "first line \nsecond line"

        # an unknown /word is a hint, never sent
        sent = len(openai_stub.requests)
        child.sendline("/frobnicate now")
        child.expect("unknown command /frobnicate")
        child.expect(PROMPT)
        assert len(openai_stub.requests) == sent

        child.sendline("/exit")
        assert finish(child) == 0
    finally:
        child.terminate(force=True)
    history = (tmp_path / "chat_history").read_text()
    assert "hello pty" in history and "/model stub-model-2" in history


def test_ws_resume_thread_shows_history(server, tmp_path: Path) -> None:
    child = spawn(server, tmp_path, "--ws")
    try:
        child.expect(PROMPT)
        child.sendline("remember the pty")
        child.expect("Echo: remember the pty")
        child.expect(PROMPT)
        thread_id = latest_thread(server.url)
        child.sendline("/exit")
        assert finish(child) == 0
    finally:
        child.terminate(force=True)

    child = spawn(server, tmp_path, "--ws", "--thread", thread_id)
    try:
        child.expect(f"history of thread {thread_id} · remember the pty")
        child.expect("remember the pty")
        child.expect("Echo: remember the pty")
        child.expect(PROMPT)
        child.sendline("/threads")
        child.expect(thread_id)
        child.expect(PROMPT)
        child.sendline("/thread Fresh-Thread-1")
        child.expect("thread Fresh-Thread-1 does not exist yet")
        child.expect(PROMPT)
        child.sendline("into the fresh thread")
        child.expect("Echo: into the fresh thread")
        child.expect(PROMPT)
        assert [m["content"] for m in thread_messages(server.url, "Fresh-Thread-1")] == [
            "into the fresh thread",
            "Echo: into the fresh thread",
        ]
        child.sendeof()
        assert finish(child) == 0
    finally:
        child.terminate(force=True)


def test_http_session(server, openai_stub, tmp_path: Path) -> None:
    child = spawn(server, tmp_path, "--model", "stub-model")
    try:
        child.expect(PROMPT)
        openai_stub.reset()
        child.sendline("one")
        child.expect("Echo: one")
        child.expect(PROMPT)
        # Esc+Enter inserts a newline; the conversation is kept client-side
        child.send("two\x1b\r")
        child.sendline("three")
        child.expect("Echo: two")
        child.expect(PROMPT)
        sent = openai_stub.requests[-1]["messages"]
        assert [m["content"] for m in sent] == ["one", "Echo: one", "two\nthree"]

        # Ctrl-C closes the stream; the server cancels the upstream request
        started = time.monotonic()
        child.sendline(LONG_REPLY)
        child.expect("thinking")  # past the echo of the typed line
        child.expect("ABC")
        child.sendintr()
        child.expect("stopped")
        child.expect(PROMPT)
        assert openai_stub.wait_disconnect(timeout=10, after=started) is not None

        child.sendline("/threads")
        child.expect("needs --ws")
        child.expect(PROMPT)
        child.sendeof()
        assert finish(child) == 0
    finally:
        child.terminate(force=True)


def test_one_shot_in_a_terminal_renders_markdown(server, tmp_path: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "nodetool", "chat", "--url", server.url, "--message", "[[say:**Bold** move]]"],
        env={**os.environ, "TERM": "xterm-256color", "NODETOOL_DATA_DIR": str(tmp_path)},
        cwd=str(REPO),
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=30,
    )
    output = child.read()  # until the program exits
    child.close()
    assert child.exitstatus == 0, output
    assert re.search(styled("Bold move"), output)
    assert "**" not in output
