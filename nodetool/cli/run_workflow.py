"""`nodetool run FILE.json`: run a workflow locally with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nodetool.cli.common import build_settings, err_console, fail

if TYPE_CHECKING:
    from rich.table import Table

    from nodetool.config import Settings
    from nodetool.types.jobs import JobEvent
    from nodetool.workflows.runner import Prepared

_STYLES = {
    "pending": ("·", "dim"),
    "running": ("…", "yellow"),
    "completed": ("✓", "green"),
    "error": ("✗", "red"),
    "skipped": ("-", "dim"),
}


def run(
    file: Path = typer.Argument(..., help="Workflow JSON file."),
    param: list[str] | None = typer.Option(
        None, "--param", help="Input as name=value (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outputs as JSON."),
    provider: str | None = typer.Option(
        None, "--provider", help="Default provider: local | openai | ollama."
    ),
    default_model: str | None = typer.Option(
        None, "--default-model", help="Model for nodes that name none."
    ),
) -> None:
    """Run a NodeTool workflow file and print its outputs."""
    import asyncio
    import json

    from nodetool.errors import NodetoolError
    from nodetool.workflows.graph import normalize_workflow
    from nodetool.workflows.params import parse_cli_params
    from nodetool.workflows.runner import prepare

    settings = build_settings(default_provider=provider, default_model=default_model)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", code=2) from None
    except ValueError as exc:
        raise fail(f"{file} is not valid JSON: {exc}", code=2) from None
    try:
        workflow = normalize_workflow(raw)
        prepared = prepare(workflow["graph"], parse_cli_params(param))
    except NodetoolError as exc:
        raise fail(f"{file.name}: {exc.message}", code=2) from None

    view = _ProgressView(prepared)
    try:
        results = asyncio.run(_execute(settings, prepared, workflow["id"], view))
    except NodetoolError as exc:
        view.finish()
        raise fail(exc.message) from None
    except KeyboardInterrupt:
        view.finish()
        raise fail("cancelled", code=130) from None
    view.finish()
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=2, default=str))
        return
    shown = results or {k: v[0] if len(v) == 1 else v for k, v in view.shown.items()}
    if not results and shown:
        err_console().print("[dim](no outputs; showing the previews)[/dim]")
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
        typer.echo(f"{name}:\n{text}\n")
    if not shown:
        err_console().print("[dim](the workflow has no outputs)[/dim]")


async def _execute(
    settings: Settings, prepared: Prepared, workflow_id: str, view: _ProgressView
) -> dict[str, Any]:
    from nodetool.workflows.nodes.base import RunContext
    from nodetool.workflows.runner import run_graph

    providers = None
    if prepared.uses_models:
        from nodetool.providers.registry import ProviderRegistry

        providers = await ProviderRegistry.create(settings)
    view.start()
    try:
        context = RunContext(
            emit=view.on_event, workflow_id=workflow_id, providers=providers, settings=settings
        )
        return await run_graph(prepared, context)
    finally:
        if providers is not None:
            await providers.aclose()


class _ProgressView:
    """A live table on stderr: one row per node with its status and latest detail."""

    def __init__(self, prepared: Prepared) -> None:
        self.rows: dict[str, list[str]] = {
            node.id: [node.type.rsplit(".", 1)[-1], "pending", ""]
            for node in prepared.graph.nodes
            if prepared.classes[node.id].runnable
        }
        self.previews = {
            node.id: node.name for node in prepared.graph.nodes if node.type.endswith(".Preview")
        }
        self.shown: dict[str, list[Any]] = {}  # preview name -> values
        self.chunks: dict[str, int] = {}
        self.live: Any = None

    def start(self) -> None:
        from rich.live import Live

        self.live = Live(
            get_renderable=self.table, console=err_console(), refresh_per_second=8, transient=False
        )
        self.live.start()

    def finish(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def on_event(self, event: JobEvent) -> None:
        from nodetool.types.jobs import NodeProgress, NodeUpdate, OutputUpdate

        row = self.rows.get(getattr(event, "node_id", ""))
        if row is None:
            return
        kind = type(event)
        if kind is NodeUpdate:
            row[1] = str(event.status)
            if event.error:
                row[2] = str(event.error)
        elif kind is NodeProgress:
            row[2] = f"{event.progress}/{event.total}"
        elif kind is OutputUpdate:
            if event.output_name == "chunk":
                count = self.chunks.get(event.node_id, 0) + len(str(event.value))
                self.chunks[event.node_id] = count
                row[2] = f"streaming: {count} chars"
            else:
                row[2] = _snippet(event.value)
                if event.node_id in self.previews:
                    name = self.previews[event.node_id]
                    self.shown.setdefault(name, []).append(event.value)

    def table(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        id_width = min(max((len(i) for i in self.rows), default=4), 24)
        type_width = min(max((len(r[0]) for r in self.rows.values()), default=4), 22)
        table.add_column("node", no_wrap=True, min_width=id_width, overflow="ellipsis")
        table.add_column("type", no_wrap=True, min_width=type_width, overflow="ellipsis")
        table.add_column("status", no_wrap=True, min_width=11)
        table.add_column("detail", overflow="ellipsis", no_wrap=True, ratio=1)
        for node_id, (kind, status, detail) in self.rows.items():
            mark, style = _STYLES.get(status, ("?", ""))
            table.add_row(node_id, kind, Text(f"{mark} {status}", style=style), Text(detail))
        return table


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
