"""Slash commands: parsing (pure) and running them against a connection.

Only a known `/name` on a single line is a command; its argument keeps its case. An unknown
`/word` gets a hint instead of being sent. Everything else is ordinary text: `/ hi`, paths such
as `/etc/hosts is…`, multi-line input, and `//text` (sent as `/text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodetool.client.base import ClientError, split_names

if TYPE_CHECKING:
    from rich.console import Console

    from nodetool.client.base import Connection

COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("/help", "show this help"),
    "models": ("/models", "list the server's models"),
    "model": ("/model [ID]", "show or set the model"),
    "provider": ("/provider [NAME]", "show or set the provider"),
    "tools": ("/tools [names|none]", "show or set the server tools to use (--ws)"),
    "thread": ("/thread [ID]", "show the thread, or switch to one and show its history (--ws)"),
    "threads": ("/threads", "list your threads (--ws)"),
    "new": ("/new", "start a new conversation"),
    "clear": ("/clear", "clear the screen"),
    "history": ("/history", "show the conversation so far"),
    "workflow": ("/workflow [ID|none]", "show or set the workflow messages run (--ws)"),
    "exit": ("/exit", "quit (also /quit or Ctrl-D)"),
}
ALIASES = {"quit": "exit", "q": "exit", "?": "help"}
_WORD = re.compile(r"/([A-Za-z?][\w-]*)(?:\s+(.*))?", re.S)
TOOLS_HTTP_NOTE = (
    "in HTTP mode tools are configured on the server (`nodetool serve --tools`); "
    "choosing tools per message needs --ws"
)


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""


@dataclass(frozen=True)
class Unknown:
    word: str


@dataclass(frozen=True)
class Text:
    text: str


def parse(line: str) -> Command | Unknown | Text:
    """Classify one input: a known command, an unknown `/word`, or text to send."""
    stripped = line.strip()
    if stripped.startswith("//"):
        return Text(stripped[1:])
    if "\n" in stripped:
        return Text(stripped)
    match = _WORD.fullmatch(stripped)
    if not match:
        return Text(stripped)
    word = match.group(1).lower()
    name = ALIASES.get(word, word)
    if name in COMMANDS:
        return Command(name, (match.group(2) or "").strip())
    return Unknown("/" + match.group(1))


def unknown_hint(word: str) -> str:
    return f"unknown command {word}: type /help for commands, or start with // to send it as text"


class CommandRunner:
    """Runs parsed commands; `run` returns False when the session should end."""

    def __init__(self, conn: Connection, console: Console) -> None:
        self.conn = conn
        self.console = console

    @property
    def ws(self) -> bool:
        return self.conn.transport == "ws"

    def say(self, message: str, style: str = "dim") -> None:
        self.console.print(message, style=style, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(message, style="yellow", highlight=False, markup=False)

    def _needs_ws(self, name: str) -> bool:
        if not self.ws:
            self.warn(f"/{name} needs --ws (the HTTP mode keeps the conversation in this client)")
        return not self.ws

    async def run(self, command: Command) -> bool:
        if command.name == "exit":
            return False
        handler = getattr(self, f"cmd_{command.name}")
        try:
            await handler(command.arg)
        except ClientError as exc:
            self.console.print(f"[bold red]error:[/bold red] [red]{_escape(exc.message)}[/red]")
        return True

    async def cmd_help(self, arg: str) -> None:
        from rich.table import Table

        table = Table(box=None, show_header=False, padding=(0, 2))
        for usage, description in COMMANDS.values():
            table.add_row(f"[bold]{_escape(usage)}[/bold]", description)
        self.console.print(table)
        self.say(
            "Enter sends · Esc+Enter or a trailing \\ adds a line · Ctrl-C stops a reply · "
            "Ctrl-D quits · //text sends text starting with /"
        )

    async def cmd_models(self, arg: str) -> None:
        from nodetool.client.render import render_list

        models = await self.conn.models()
        if not models:
            self.say("the server lists no models")
        render_list(self.console, models, self.conn.state.model)

    async def cmd_model(self, arg: str) -> None:
        if arg:
            self.conn.state.model = arg
        self.say(f"model: {self.conn.state.model or '(server default)'}")

    async def cmd_provider(self, arg: str) -> None:
        if arg:
            self.conn.state.provider = arg
        self.say(f"provider: {self.conn.state.provider or '(routed by model)'}")

    async def cmd_tools(self, arg: str) -> None:
        if not self.ws:
            self.warn(TOOLS_HTTP_NOTE)
            return
        if arg:
            names = split_names(arg)
            self.conn.state.tools = None if names in (["none"], ["-"]) else names
        tools = self.conn.state.tools
        self.say(f"tools: {', '.join(tools) if tools else '(server default)'}")

    async def cmd_thread(self, arg: str) -> None:
        if self._needs_ws("thread"):
            return
        if not arg:
            self.say(f"thread: {self.conn.state.thread_id or '(new; created by the next message)'}")
            return
        self.conn.state.thread_id = arg
        await self.show_history(announce=True)

    async def show_history(self, announce: bool = False) -> None:
        from nodetool.client.render import render_history

        thread_id = self.conn.state.thread_id
        if announce:
            info = await self.conn.thread_info()
            if info is None:
                self.say(f"thread {thread_id} does not exist yet: the next message creates it")
                return
            title = f" · {info['title']}" if info.get("title") else ""
            self.say(f"history of thread {thread_id}{title}")
        render_history(self.console, await self.conn.history())

    async def cmd_threads(self, arg: str) -> None:
        from nodetool.client.render import render_threads

        if self._needs_ws("threads"):
            return
        render_threads(self.console, await self.conn.threads(), self.conn.state.thread_id)

    async def cmd_new(self, arg: str) -> None:
        self.conn.new_conversation()
        self.say("new conversation")

    async def cmd_clear(self, arg: str) -> None:
        self.console.clear()

    async def cmd_history(self, arg: str) -> None:
        if self.ws and not self.conn.state.thread_id:
            self.say("no thread yet")
            return
        await self.show_history()

    async def cmd_workflow(self, arg: str) -> None:
        if self._needs_ws("workflow"):
            return
        if arg:
            self.conn.state.workflow_id = None if arg.lower() in ("none", "-") else arg
        self.say(f"workflow: {self.conn.state.workflow_id or '(none: messages go to the model)'}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
