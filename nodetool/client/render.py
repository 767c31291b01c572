"""Showing a turn's frames: rich on a terminal, plain text in pipes.

`TerminalView` streams Markdown in place with `rich.live.Live` (the refresh thread renders at a
fixed rate, a chunk only appends to a list). Finished paragraphs of long answers are printed
above the live area so the live part stays shorter than the screen and never scrolls (no
flicker, no duplicated lines). Tool calls and results are compact panels; workflow job/node
updates are the live `JobView` table (job_view.py); errors are red with the server's message.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from nodetool.client.base import Frame, message_text, short
from nodetool.client.job_view import JOB_EVENTS, JobView

REFRESH_PER_SECOND = 12
COMMIT_CHECK_INTERVAL = 0.25


class TurnView:
    """Frame dispatch and what a turn produced; subclasses decide how it looks."""

    def __init__(self) -> None:
        self.parts: list[str] = []  # the current text segment
        self.text = ""  # everything streamed in the turn
        self.segment_streamed = False
        self.errors: list[str] = []
        self.stopped = False

    def handle(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "chunk":
            content = frame.get("content") or ""
            if content:
                self.segment_streamed = True
                self.text += content
                self.on_text(content)
        elif kind == "tool_call":
            self.segment_streamed = False
            self.on_tool_call(frame)
        elif kind == "tool_result":
            self.on_tool_result(frame)
        elif kind == "message":
            self._on_message(frame)
        elif kind in JOB_EVENTS:
            self.on_workflow(frame)
        elif kind == "generation_stopped":
            self.stopped = True
        elif kind == "error":
            message = str(frame.get("message") or frame.get("error") or "unknown error")
            self.error(message)

    def _on_message(self, frame: Frame) -> None:
        """Show a final answer that arrived only as a message (e.g. workflow outputs)."""
        if frame.get("role") != "assistant" or frame.get("tool_calls"):
            return
        content = message_text(frame.get("content"))
        if content and not self.segment_streamed:
            self.segment_streamed = True
            self.text += content
            self.on_text(content)

    def error(self, message: str) -> None:
        self.errors.append(message)
        self.on_error(message)

    # hooks
    def begin(self) -> None: ...

    def end(self) -> None: ...

    def on_text(self, content: str) -> None: ...

    def on_tool_call(self, frame: Frame) -> None: ...

    def on_tool_result(self, frame: Frame) -> None: ...

    def on_workflow(self, frame: Frame) -> None: ...

    def on_error(self, message: str) -> None: ...


class PlainView(TurnView):
    """Just the answer text, written as it streams (pipes, `--message` without a terminal)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, echo=True) -> None:
        super().__init__()
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.echo = echo

    def on_text(self, content: str) -> None:
        if self.echo:
            self.out.write(content)
            self.out.flush()

    def on_error(self, message: str) -> None:
        self.err.write(f"error: {message}\n")
        self.err.flush()

    def end(self) -> None:
        if self.echo and self.text and not self.text.endswith("\n"):
            self.out.write("\n")
            self.out.flush()


def tool_call_panel(name: str, args: Any) -> Panel:
    from nodetool.tools.mcp_config import server_of

    body = Text(str(name), style="bold cyan")
    body.append(" " + short(args if args is not None else {}), style="cyan")
    server = server_of(str(name))
    title = f"tool call · MCP server {server}" if server else "tool call"
    return Panel(body, title=title, title_align="left", border_style="cyan", expand=False)


def tool_result_panel(name: str, ok: bool, value: Any) -> Panel:
    style = "green" if ok else "red"
    title = f"{name} {'✓' if ok else '✗'}"
    return Panel(
        Text(short(value), style=None if ok else "red"),
        title=title,
        title_align="left",
        border_style=style,
        expand=False,
    )


class TerminalView(TurnView):
    """Rich rendering of a turn inside one `Live` area."""

    def __init__(self, console: Console, commit_interval: float = COMMIT_CHECK_INTERVAL) -> None:
        super().__init__()
        self.console = console
        self.commit_interval = commit_interval
        self.job: JobView | None = None
        self.live: Live | None = None
        self._finished = False
        self._next_check = 0.0
        self._spinner = Spinner("dots", text=Text("thinking…", style="dim"))
        self._version = 0  # bumped whenever `parts` changes
        self._shown = -1
        self._markdown: Markdown | None = None

    def _renderable(self) -> RenderableType:
        items: list[RenderableType] = []
        if self.job is not None:
            items.append(self.job)
        if self.parts:
            version = self._version
            if self._shown != version or self._markdown is None:  # re-parse only on change
                self._markdown = Markdown("".join(self.parts))
                self._shown = version
            items.append(self._markdown)
        elif not self._finished:
            items.append(self._spinner)
        return Group(*items)

    def begin(self) -> None:
        self.live = Live(
            console=self.console,
            get_renderable=self._renderable,
            refresh_per_second=REFRESH_PER_SECOND,
            vertical_overflow="ellipsis",
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def end(self) -> None:
        self._finished = True
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.stopped:
            self.console.print(Text("⏹ stopped", style="dim"))

    def on_text(self, content: str) -> None:
        self.parts.append(content)
        self._version += 1
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.commit_interval
            self._commit_finished_paragraphs()

    def _commit_finished_paragraphs(self) -> None:
        """Print finished paragraphs above the live area when it grows taller than the screen."""
        text = "".join(self.parts)
        width = max(self.console.width, 20)
        budget = self.console.height - 4 - (len(self.job.nodes) + 2 if self.job else 0)
        lines = sum(1 + len(line) // width for line in text.split("\n"))
        if lines <= budget:
            return
        cut = paragraph_boundary(text)
        if cut <= 0:
            return
        self.parts = [text[cut:]]
        self._version += 1
        self.console.print(Markdown(text[:cut]))

    def _flush_segment(self) -> None:
        if self.parts:
            text = "".join(self.parts)
            self.parts = []
            self._version += 1
            if text.strip():
                self.console.print(Markdown(text))

    def on_tool_call(self, frame: Frame) -> None:
        self._flush_segment()
        self.console.print(tool_call_panel(str(frame.get("name", "?")), frame.get("args")))

    def on_tool_result(self, frame: Frame) -> None:
        ok = bool(frame.get("ok", True))
        value = frame.get("result") if ok else frame.get("error")
        self.console.print(tool_result_panel(str(frame.get("name", "?")), ok, value))

    def on_workflow(self, frame: Frame) -> None:
        if self.job is None:
            self.job = JobView()
        self.job.update(frame)

    def on_error(self, message: str) -> None:
        self._flush_segment()
        self.console.print(Text.assemble(("error: ", "bold red"), (message, "red")))


def paragraph_boundary(text: str) -> int:
    """Offset just after the last blank line outside a code fence (0 when there is none)."""
    offset = 0
    cut = 0
    fenced = False
    for line in text.splitlines(keepends=True):
        offset += len(line)
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not stripped and not fenced and offset < len(text):
            cut = offset
    return cut


# ---- static views ----------------------------------------------------------------------------


def render_history(console: Console, messages: list[Frame]) -> None:
    """Print a conversation: user lines, assistant Markdown, tool panels."""
    for message in messages:
        role = message.get("role")
        content = message_text(message.get("content"))
        if role == "user":
            console.print(Text.assemble(("you › ", "bold green"), content))
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function", {}) if isinstance(call, dict) else {}
                console.print(tool_call_panel(function.get("name", "?"), function.get("arguments")))
            if content:
                console.print(Markdown(content))
        elif role == "tool":
            console.print(tool_result_panel(str(message.get("name") or "tool"), True, content))
        elif role == "system" and content:
            console.print(Text(f"system: {content}", style="dim"))


def render_threads(console: Console, threads: list[Frame], current: str | None) -> None:
    if not threads:
        console.print(Text("no threads yet", style="dim"))
        return
    table = Table(box=None, header_style="bold", padding=(0, 1))
    table.add_column("id")
    table.add_column("title")
    table.add_column("updated")
    for thread in threads:
        thread_id = str(thread.get("id", ""))
        mark = " *" if thread_id == current else ""
        table.add_row(
            thread_id + mark, short(thread.get("title") or "", 50), str(thread.get("updated_at"))
        )
    console.print(table)


def render_list(console: Console, items: list[str], current: str | None = None) -> None:
    for item in items:
        if item == current:
            console.print(Text.assemble(("* ", "green"), (item, "bold")))
        else:
            console.print(f"  {item}", highlight=False)
