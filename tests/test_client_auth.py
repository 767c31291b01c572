"""`nodetool chat` against a server with a static token: refused tokens are one clear line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from nodetool.cli.main import app
from tests.client_support import TOKEN, editor
from tests.support.servers import ServerThread

runner = CliRunner()
TRANSPORTS = [pytest.param([], id="http"), pytest.param(["--ws"], id="ws")]


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    data = tmp_path_factory.mktemp("client-auth")
    with editor(openai_stub.url, data, auth_provider="static", worker_auth_token=TOKEN) as srv:
        yield srv


def chat(server: ServerThread, *args: str, env=None):
    return runner.invoke(app, ["chat", "--url", server.url, *args], env=env)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_flag_is_accepted(server, transport) -> None:
    result = chat(server, *transport, "--token", TOKEN, "--message", "with token")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: with token\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_from_environment(server, transport) -> None:
    result = chat(server, *transport, "--message", "env token", env={"NODETOOL_API_KEY": TOKEN})
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: env token\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_token_is_refused_in_one_line(server, transport) -> None:
    result = chat(server, *transport, "--token", "wrong-token", "--message", "hi")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert server.url in lines[0] and "refused the token" in lines[0]
    assert "NODETOOL_API_KEY" in lines[0]
    assert "wrong-token" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_missing_token_says_one_is_needed(server, transport) -> None:
    result = chat(server, *transport, "--message", "hi")
    assert result.exit_code == 1
    assert "refused the token" in result.stderr and "needs a token" in result.stderr
    assert "Traceback" not in result.output
