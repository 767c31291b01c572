"""`nodetool run FILE.json`: run a workflow locally with live progress."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    file: Path = typer.Argument(..., help="Workflow JSON file."),
    param: list[str] | None = typer.Option(
        None, "--param", help="Input as name=value (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outputs as JSON."),
) -> None:
    """Run a NodeTool workflow file and print its outputs."""
    raise NotImplementedError  # Workflow issue
