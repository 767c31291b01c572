"""The interactive session: prompt_toolkit input, slash commands, interruptible replies.

Enter sends; Esc+Enter or a trailing backslash adds a line. Ctrl-C at the prompt clears the
line; during a reply it stops the reply (WS: `{type: "stop"}`, the server ends the turn; HTTP:
the stream is closed) and returns to the prompt; a second Ctrl-C abandons it at once. Ctrl-D
or /exit quits. Input history is kept in `<data dir>/chat_history`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from nodetool.client.base import ClientError, Connection
from nodetool.client.commands import Command, CommandRunner, Unknown, parse, unknown_hint
from nodetool.client.render import TerminalView

STOP_GRACE = 5.0  # seconds the server gets to end a stopped turn before the client gives up
HISTORY_FILE = "chat_history"


def key_bindings() -> Any:
    """Enter sends; Esc+Enter, or Enter after a trailing backslash, inserts a newline."""
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        document = buffer.document
        if document.is_cursor_at_the_end and document.text.endswith("\\"):
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    return bindings


def make_history(data_dir: Path | None) -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if data_dir is None:
        return InMemoryHistory()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / HISTORY_FILE
        path.touch(exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


class ChatRepl:
    """The terminal prompt loop of `nodetool chat` over one connection (HTTP or WebSocket)."""

    def __init__(self, conn: Connection, console: Console, data_dir: Path | None) -> None:
        self.conn = conn
        self.console = console
        self.data_dir = data_dir
        self.commands = CommandRunner(conn, console)

    def banner(self) -> None:
        state = self.conn.state
        parts = [f"nodetool chat · {state.url} · {self.conn.transport}"]
        if state.model:
            parts.append(f"model {state.model}")
        if state.thread_id:
            parts.append(f"thread {state.thread_id}")
        self.console.print(" · ".join(parts), style="bold", highlight=False, markup=False)
        self.console.print(
            "/help for commands · Esc+Enter for a new line · Ctrl-C stops a reply · Ctrl-D quits",
            style="dim",
            highlight=False,
            markup=False,
        )

    async def start(self) -> None:
        """Connect (fatal problems raise ClientError) and show a resumed thread's history."""
        try:
            await self.conn.open(check=True)
        except ClientError as exc:
            if exc.fatal:
                raise
            self.console.print(Text(f"warning: {exc.message}", style="yellow"))
        self.banner()
        if self.conn.transport == "ws" and self.conn.state.thread_id:
            await self._interruptible(lambda: self.commands.show_history(announce=True))

    async def run(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.formatted_text import HTML

        await self.start()
        session: PromptSession[str] = PromptSession(
            history=make_history(self.data_dir),
            multiline=True,
            key_bindings=key_bindings(),
            prompt_continuation=lambda width, line, wrap: "… ".rjust(width),
            enable_history_search=False,
        )
        prompt = HTML("<ansigreen><b>you ›</b></ansigreen> ")
        while True:
            try:
                line = await session.prompt_async(prompt)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not line.strip():
                continue
            if not await self.handle(line):
                break

    async def handle(self, line: str) -> bool:
        """Run one input; False when the session should end."""
        parsed = parse(line)
        if isinstance(parsed, Command):
            if parsed.name == "exit":
                return False
            await self._interruptible(lambda: self.commands.run(parsed))
            return True
        if isinstance(parsed, Unknown):
            self.console.print(unknown_hint(parsed.word), style="yellow", markup=False)
            return True
        await self.reply(parsed.text)
        return True

    async def reply(self, text: str) -> None:
        view = TerminalView(self.console)
        view.begin()

        async def consume() -> None:
            async for frame in self.conn.turn(text):
                view.handle(frame)

        task = asyncio.create_task(consume())
        stopper: list[asyncio.Task[None]] = []

        def on_sigint() -> None:
            view.stopped = True
            if stopper:
                task.cancel()
            else:
                stopper.append(asyncio.create_task(self._stop(task)))

        with _sigint(on_sigint):
            await asyncio.wait({task})
        for pending in stopper:
            pending.cancel()
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            view.error(error.message if isinstance(error, ClientError) else _describe(error))
        view.end()
        self.console.print()

    async def _stop(self, task: asyncio.Task[None]) -> None:
        try:
            graceful = await self.conn.stop()
        except ClientError:
            graceful = False
        if graceful:
            await asyncio.wait({task}, timeout=STOP_GRACE)
        if not task.done():
            task.cancel()

    async def _interruptible(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run a command; Ctrl-C cancels it and returns to the prompt."""
        task = asyncio.create_task(make())
        with _sigint(task.cancel):
            await asyncio.wait({task})
        if task.cancelled():
            self.console.print("interrupted", style="dim")
        elif task.exception() is not None:
            error = task.exception()
            message = error.message if isinstance(error, ClientError) else _describe(error)
            self.console.print(Text.assemble(("error: ", "bold red"), (message, "red")))


@contextlib.contextmanager
def _sigint(handler: Callable[[], None]) -> Any:
    """Route SIGINT to `handler` while the block runs (prompt_toolkit owns it at the prompt)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
        installed = False
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def run_session(conn: Connection, data_dir: Path | None) -> None:
    """The interactive loop; fatal connection problems raise ClientError."""
    console = Console(highlight=False)
    try:
        await ChatRepl(conn, console, data_dir).run()
    finally:
        await conn.aclose()
