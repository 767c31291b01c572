"""`nodetool chat --message`: one-shot mode against live editor servers over HTTP and --ws."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodetool.cli.main import app
from tests.client_support import (
    SHOUT_WORKFLOW,
    add_workflow,
    chat_server,
    editor,
    thread_messages,
)
from tests.support.servers import ServerThread, free_port

runner = CliRunner()
TRANSPORTS = [pytest.param([], id="http"), pytest.param(["--ws"], id="ws")]


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor(openai_stub.url, tmp_path_factory.mktemp("client-oneshot")) as srv:
        add_workflow(srv.url, SHOUT_WORKFLOW)
        yield srv


def chat(server: ServerThread, *args: str, input: str | None = None, env=None):
    return runner.invoke(app, ["chat", "--url", server.url, *args], input=input, env=env)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_prints_just_the_answer(server, openai_stub, transport) -> None:
    result = chat(server, *transport, "--message", "hello there")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: hello there\n"
    assert result.stderr == ""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_from_stdin(server, transport) -> None:
    result = chat(server, *transport, "--message", "-", input="from a pipe\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: from a pipe\n"


def test_piped_stdin_without_message_is_one_shot(server) -> None:
    result = chat(server, input="piped text")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: piped text\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_piped_lines_are_one_message_each_until_exit(server, openai_stub, transport) -> None:
    openai_stub.reset()
    piped = "first\n\nsecond\n/model stub-model-2\n/exit\nnever sent\n"
    result = chat(server, *transport, input=piped)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Echo: first\nEcho: second\n")
    assert "never sent" not in result.stdout
    assert len(openai_stub.requests) == 2  # one turn per line, nothing after /exit
    second = openai_stub.requests[1]["messages"]
    assert [m["content"] for m in second if m["role"] == "user"] == ["first", "second"]


def test_an_empty_pipe_sends_nothing(server, openai_stub) -> None:
    openai_stub.reset()
    result = chat(server, "--ws", input="")
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert openai_stub.requests == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_json_prints_the_final_message(server, transport) -> None:
    result = chat(server, *transport, "--json", "--message", "as json")
    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout)
    assert message["role"] == "assistant"
    assert message["content"] == "Echo: as json"
    assert message["model"] == "stub-model"
    if transport:
        assert message["thread_id"]
        stored = thread_messages(server.url, message["thread_id"])
        assert [m["content"] for m in stored] == ["as json", "Echo: as json"]
    else:
        assert message["finish_reason"] == "stop"
        assert message["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_model_is_sent_upstream(server, openai_stub, transport) -> None:
    openai_stub.reset()
    result = chat(server, *transport, "--model", "stub-model-2", "--message", "which model")
    assert result.exit_code == 0, result.output
    assert openai_stub.requests[-1]["model"] == "stub-model-2"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_provider_is_passed_to_the_server(server, transport) -> None:
    ok = chat(server, *transport, "--provider", "openai", "--message", "routed")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == "Echo: routed\n"
    bad = chat(server, *transport, "--provider", "no-such-provider", "--message", "routed")
    assert bad.exit_code != 0
    assert "no-such-provider" in bad.stderr
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_upstream_error_exits_non_zero_with_the_server_message(server, transport) -> None:
    result = chat(server, *transport, "--message", "fail [[error:500]]")
    assert result.exit_code == 1
    assert "stub upstream error" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout.strip() == ""


def test_ws_tools_run_on_the_server(server) -> None:
    text = 'add [[tool:calculator {"expression": "2+2"}]]'
    result = chat(server, "--ws", "--tools", "calculator", "--message", text, "--json")
    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout)
    assert message["content"] == "Tool results: 4"
    roles = [m["role"] for m in thread_messages(server.url, message["thread_id"])]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_ws_thread_resumes_on_the_server(server, openai_stub) -> None:
    first = json.loads(chat(server, "--ws", "--json", "--message", "remember me").stdout)
    thread_id = first["thread_id"]
    openai_stub.reset()
    second = chat(server, "--ws", "--thread", thread_id, "--message", "and now?")
    assert second.exit_code == 0, second.output
    assert second.stdout == "Echo: and now?\n"
    sent = [m.get("content") for m in openai_stub.requests[-1]["messages"]]
    assert "remember me" in sent and "Echo: remember me" in sent
    assert len(thread_messages(server.url, thread_id)) == 4


def test_ws_workflow_turn(server) -> None:
    result = chat(server, "--ws", "--workflow", "shout", "--message", "hey")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hey!!\n"
    missing = chat(server, "--ws", "--workflow", "no-such-workflow", "--message", "hey")
    assert missing.exit_code == 1
    assert "no-such-workflow" in missing.stderr


def test_http_tools_warns_and_still_answers(server) -> None:
    result = chat(server, "--tools", "calculator", "--message", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: hi\n"
    assert "--tools is ignored in HTTP mode" in result.stderr


@pytest.mark.parametrize("flag", ["--thread", "--workflow"])
def test_ws_only_flags_need_ws(server, flag) -> None:
    result = chat(server, flag, "x", "--message", "hi")
    assert result.exit_code == 2
    assert f"{flag} needs --ws" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--message", "   "], "the message is empty"),
        (["--url", "ftp://x", "--message", "hi"], "invalid --url"),
    ],
)
def test_bad_input_exits_2(server, args, needle) -> None:
    result = chat(server, *args)
    assert result.exit_code == 2
    assert needle in result.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_server_is_one_clear_line(transport) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["chat", "--url", url, *transport, "--message", "hi"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert url in lines[0] and "connection refused" in lines[0] and "--url" in lines[0]
    assert "Traceback" not in result.output


def test_ws_against_a_server_without_chat_socket(openai_stub, tmp_path: Path) -> None:
    with chat_server(openai_stub.url, tmp_path) as srv:
        http = runner.invoke(app, ["chat", "--url", srv.url, "--message", "hi"])
        assert http.exit_code == 0, http.output
        assert http.stdout == "Echo: hi\n"
        ws = runner.invoke(app, ["chat", "--url", srv.url, "--ws", "--message", "hi"])
    assert ws.exit_code == 1
    assert "nodetool serve" in ws.stderr and len(ws.stderr.strip().splitlines()) == 1
