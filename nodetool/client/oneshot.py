"""One-shot mode (`--message`): send one message, print just the answer, exit.

Plain text when stdout is not a terminal, rich Markdown when it is; `--json` prints the final
assistant message as one JSON object. The exit status is non-zero on any error.

Line mode (input piped in without `--message`): each line is one message of one conversation,
answered in turn; slash commands work (`/exit` stops reading), blank lines are skipped.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from nodetool.client.base import Connection, Frame
from nodetool.client.render import PlainView, TerminalView, TurnView


def final_message(conn: Connection, view: TurnView) -> Frame:
    """The turn's final assistant message (as the server sent it), without the frame type."""
    message = dict(conn.final) if conn.final else {"role": "assistant", "content": view.text}
    message.pop("type", None)
    if conn.state.thread_id and "thread_id" not in message and conn.transport == "ws":
        message["thread_id"] = conn.state.thread_id
    return message


async def run_once(conn: Connection, text: str, *, as_json: bool, out: TextIO | None = None) -> int:
    """Run one turn; return the exit status. ClientErrors propagate (one line at the CLI)."""
    out = out or sys.stdout
    view: TurnView
    if out.isatty() and not as_json:
        from rich.console import Console

        view = TerminalView(Console(file=out))
    else:
        view = PlainView(out, sys.stderr, echo=not as_json)
    try:
        await conn.open(check=False)
        view.begin()
        try:
            async for frame in conn.turn(text):
                view.handle(frame)
        finally:
            view.end()
    finally:
        await conn.aclose()
    if view.errors:
        return 1
    if as_json:
        out.write(json.dumps(final_message(conn, view), ensure_ascii=False, default=str) + "\n")
        out.flush()
    return 0


async def run_lines(conn: Connection, lines: TextIO, out: TextIO | None = None) -> int:
    """Send each line of `lines` as one message until EOF or `/exit`; the exit status is 1
    when any turn failed. ClientErrors on connecting propagate (one line at the CLI)."""
    from rich.console import Console

    from nodetool.client.commands import Command, CommandRunner, Unknown, parse, unknown_hint

    out = out or sys.stdout
    failed = False
    commands = CommandRunner(conn, Console(file=out, highlight=False))
    try:
        await conn.open(check=False)
        while line := await asyncio.to_thread(lines.readline):
            if not line.strip():
                continue
            parsed = parse(line)
            if isinstance(parsed, Command):
                if not await commands.run(parsed):
                    break
                continue
            if isinstance(parsed, Unknown):
                sys.stderr.write(unknown_hint(parsed.word) + "\n")
                continue
            view = PlainView(out, sys.stderr)
            view.begin()
            try:
                async for frame in conn.turn(parsed.text):
                    view.handle(frame)
            finally:
                view.end()
            failed = failed or bool(view.errors)
    finally:
        await conn.aclose()
    return 1 if failed else 0
