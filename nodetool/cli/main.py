"""The `nodetool` Typer application: registers every command from its own module."""

from __future__ import annotations

import typer

from nodetool import __version__
from nodetool.cli import chat, doctor, mcp, models, run_workflow, servers, token, tools

app = typer.Typer(
    name="nodetool",
    help="Self-hosted NodeTool Chat API: OpenAI-compatible /v1, /chat and /predict, workflows.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nodetool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Self-hosted NodeTool Chat API."""


app.command("serve")(servers.serve)
app.command("worker")(servers.worker)
app.command("chat-server")(servers.chat_server)
app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("tools")(tools.tools)
app.command("token")(token.token)
app.command("run")(run_workflow.run)
app.command("doctor")(doctor.doctor)
app.command("mcp")(mcp.mcp)


def run() -> None:
    """Console-script entry point."""
    app()
