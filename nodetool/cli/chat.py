"""`nodetool chat`: the terminal client (interactive, or one-shot with --message)."""

from __future__ import annotations

import typer

from nodetool.cli.common import err_console, fail

DEFAULT_URL = "http://127.0.0.1:8000"


def _normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    for scheme, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(scheme):
            url = http + url[len(scheme) :]
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise fail(f"invalid --url {url!r}: expected http://HOST:PORT", code=2)
    return url


def _read_message(message: str | None, as_json: bool) -> str | None:
    """The one-shot text: --message TEXT, --message - or --json with piped stdin; else None."""
    import sys

    if message == "-" or (message is None and as_json):
        if sys.stdin.isatty() and message is None:
            raise fail("--json needs --message TEXT or --message - (stdin)", code=2)
        message = sys.stdin.read()
    if message is None:
        return None
    if not message.strip():
        raise fail("the message is empty", code=2)
    return message


def chat(
    ws: bool = typer.Option(
        False, "--ws", help="Use the /chat WebSocket (threads on the server, tools, workflows)."
    ),
    url: str = typer.Option(DEFAULT_URL, "--url", help="Server URL."),
    token: str | None = typer.Option(
        None, "--token", envvar="NODETOOL_API_KEY", help="API token (env NODETOOL_API_KEY)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Model id."),
    provider: str | None = typer.Option(None, "--provider", help="Provider (openai, ollama…)."),
    thread: str | None = typer.Option(
        None, "--thread", help="Resume this thread and show its history (--ws)."
    ),
    tools: str | None = typer.Option(
        None,
        "--tools",
        help="Server tools to use, comma separated (--ws only: in HTTP mode the server's own "
        "`serve --tools` apply).",
    ),
    workflow: str | None = typer.Option(
        None, "--workflow", help="Run this workflow for each message (--ws)."
    ),
    message: str | None = typer.Option(
        None, "--message", help="Send one message, print the answer and exit ('-' reads stdin)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One-shot: print the final message as JSON."
    ),
) -> None:
    import asyncio

    from nodetool.client.base import ChatState, ClientError, split_names

    base = _normalise_url(url)
    if not ws:
        for flag, value in (("--thread", thread), ("--workflow", workflow)):
            if value:
                raise fail(f"{flag} needs --ws (HTTP mode keeps the conversation here)", code=2)
        if tools:
            err_console().print(
                "[yellow]warning:[/yellow] --tools is ignored in HTTP mode: the server's own "
                "tools (`nodetool serve --tools`) apply; use --ws to choose tools",
                soft_wrap=True,
            )
    import sys

    text = _read_message(message, as_json)
    piped = text is None and not sys.stdin.isatty()
    state = ChatState(
        url=base,
        token=token or None,
        model=model,
        provider=provider,
        tools=split_names(tools) if tools and ws else None,
        workflow_id=workflow,
        thread_id=thread,
    )
    if ws:
        from nodetool.client.ws import WsConnection

        conn = WsConnection(state)
    else:
        from nodetool.client.http import HttpConnection

        conn = HttpConnection(state)
    try:
        if text is not None:
            from nodetool.client.oneshot import run_once

            code = asyncio.run(run_once(conn, text, as_json=as_json))
        elif piped:
            from nodetool.client.oneshot import run_lines

            code = asyncio.run(run_lines(conn, sys.stdin))
        else:
            from nodetool.cli.common import build_settings
            from nodetool.client.repl import run_session

            settings = build_settings()
            asyncio.run(run_session(conn, settings.data_dir))
            code = 0
    except ClientError as exc:
        raise fail(exc.message, code=exc.code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


chat.__doc__ = "\n\n".join(
    [
        "Chat with a nodetool server from the terminal.",
        "HTTP mode (default) streams from the OpenAI-compatible /v1 API and keeps the "
        "conversation in this client. --ws uses the /chat WebSocket: the thread lives on the "
        "server, and --tools, --thread and --workflow apply.",
        "--message sends one message and prints just the answer (plain text in pipes, "
        "--json for the final message as JSON). Input piped in without --message is one "
        "message per line, answered in turn (/exit stops). Otherwise an interactive chat "
        "starts: type /help for slash commands.",
    ]
)
