"""`nodetool run FILE.json`: run a workflow locally with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nodetool.cli.common import build_settings, err_console, fail

if TYPE_CHECKING:
    from nodetool.client.job_view import JobView
    from nodetool.config import Settings
    from nodetool.types.jobs import JobEvent
    from nodetool.workflows.runner import Prepared


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

    progress = _Progress(prepared, workflow["id"])
    try:
        results = asyncio.run(_execute(settings, prepared, workflow["id"], progress))
    except NodetoolError as exc:
        progress.finish("failed")  # the error is the one line below
        raise fail(exc.message) from None
    except KeyboardInterrupt:
        progress.finish("cancelled")
        raise fail("cancelled", code=130) from None
    progress.finish("completed")
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=2, default=str))
        return
    shown = results or {k: v[0] if len(v) == 1 else v for k, v in progress.shown.items()}
    if not results and shown:
        err_console().print("[dim](no outputs; showing the previews)[/dim]")
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
        typer.echo(f"{name}:\n{text}\n")
    if not shown:
        err_console().print("[dim](the workflow has no outputs)[/dim]")


async def _execute(
    settings: Settings, prepared: Prepared, workflow_id: str, progress: _Progress
) -> dict[str, Any]:
    from nodetool.workflows.nodes.base import RunContext
    from nodetool.workflows.runner import run_graph

    providers = None
    if prepared.uses_models:
        from nodetool.providers.registry import ProviderRegistry

        providers = await ProviderRegistry.create(settings)
    progress.start()
    try:
        context = RunContext(
            emit=progress.on_event, workflow_id=workflow_id, providers=providers, settings=settings
        )
        return await run_graph(prepared, context)
    finally:
        if providers is not None:
            await providers.aclose()


class _Progress:
    """The job's live `JobView` on stderr, and the values its Preview nodes showed."""

    def __init__(self, prepared: Prepared, workflow_id: str) -> None:
        from nodetool.client.job_view import JobView

        nodes = prepared.graph.nodes
        self.view: JobView = JobView(
            (node.id, node.type) for node in nodes if prepared.classes[node.id].runnable
        )
        self.view.update({"type": "job_update", "workflow_id": workflow_id, "status": "running"})
        self.previews = {node.id: node.name for node in nodes if node.type.endswith(".Preview")}
        self.shown: dict[str, list[Any]] = {}  # preview name -> values
        self.live: Any = None

    def start(self) -> None:
        from rich.live import Live

        self.live = Live(self.view, console=err_console(), refresh_per_second=8)
        self.live.start()

    def on_event(self, job_event: JobEvent) -> None:
        from nodetool.types.jobs import to_wire

        event = to_wire(job_event)
        self.view.update(event)
        name = self.previews.get(event.get("node_id", ""))
        if name is None:
            return
        if event.get("type") == "output_update" and event.get("output_name") != "chunk":
            self.shown.setdefault(name, []).append(event.get("value"))

    def finish(self, status: str) -> None:
        self.view.update({"type": "job_update", "status": status})
        if self.live is not None:
            self.live.stop()
            self.live = None
