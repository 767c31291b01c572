"""CliRunner tests for every command's --help, bad options and bad environment values."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nodetool import __version__
from nodetool.cli.main import app

runner = CliRunner()
COMMANDS = ["serve", "worker", "chat-server", "chat", "models", "tools", "token", "run"]
SERVERS = ["serve", "worker", "chat-server"]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"nodetool {__version__}"


def test_root_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", SERVERS)
def test_server_help_has_documented_flags(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    for flag in (
        "--host",
        "--port",
        "--auth-provider",
        "--provider",
        "--default-model",
        "--tools",
        "--workflow",
        "--reload",
        "--workers",
        "--log-level",
    ):
        assert flag in result.output, flag


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_option_is_usage_error(command: str) -> None:
    result = runner.invoke(app, [command, "--no-such-flag"])
    assert result.exit_code == 2
    assert "No such option" in result.output


@pytest.mark.parametrize("command", SERVERS)
def test_bad_port_value(command: str) -> None:
    result = runner.invoke(app, [command, "--port", "notaport"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"AUTH_PROVIDER": "bogus"}, "AUTH_PROVIDER"),
        ({"NODETOOL_LOG_LEVEL": "loud"}, "NODETOOL_LOG_LEVEL"),
        ({"NODETOOL_MAX_BODY_BYTES": "lots"}, "NODETOOL_MAX_BODY_BYTES"),
    ],
)
@pytest.mark.parametrize("command", SERVERS)
def test_bad_environment_value_one_line_exit_2(command: str, env: dict, name: str) -> None:
    result = runner.invoke(app, [command, "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert name in lines[0]
    assert "Traceback" not in result.output


def test_bad_flag_value_names_setting() -> None:
    result = runner.invoke(app, ["serve", "--auth-provider", "nope"])
    assert result.exit_code == 2
    assert "AUTH_PROVIDER" in result.output


def test_chat_server_refuses_workflows() -> None:
    result = runner.invoke(app, ["chat-server", "--workflow", "x.json"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: chat-server serves no workflows: use --workflow with `nodetool serve` or "
        "`nodetool worker`"
    )


def test_supabase_without_url_refuses_to_start() -> None:
    result = runner.invoke(app, ["worker", "--auth-provider", "supabase"])
    assert result.exit_code == 2
    assert "SUPABASE_URL" in result.output


def test_port_in_use_one_line_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nodetool",
                "chat-server",
                "--port",
                str(port),
                "--provider",
                "openai",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**__import__("os").environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
        )
    assert proc.returncode == 1, proc.stderr
    assert "already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from nodetool.cli.main import app; "
        "heavy = [m for m in ('fastapi', 'uvicorn', 'openai', 'llama_cpp', 'sqlalchemy', "
        "'httpx', 'starlette', 'websockets') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_server_process_tunes_its_garbage_collector() -> None:
    """Start-up objects frozen, the young generation collected far less often (gc_tuning)."""
    import subprocess
    import sys

    code = (
        "import gc; from nodetool.api.gc_tuning import YOUNG, tune_for_serving; "
        "before = gc.get_threshold()[0]; tune_for_serving(); "
        "print(before, gc.get_threshold()[0] == YOUNG, gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["700", "True", "True"]
