"""`nodetool tools`: the available tools and their parameters."""

from __future__ import annotations

from typing import Any

import typer


def describe_parameters(schema: dict[str, Any]) -> list[str]:
    """One line per parameter: `name: type (required|optional)` plus a short description."""
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        if kind is None and "anyOf" in prop:
            kinds = [p.get("type") for p in prop["anyOf"] if p.get("type") not in (None, "null")]
            kind = "|".join(str(k) for k in kinds) or "any"
        flag = "required" if name in required else "optional"
        line = f"{name}: {kind or 'any'} ({flag})"
        if prop.get("description"):
            line += f" — {prop['description']}"
        lines.append(line)
    return lines or ["(none)"]


def tools(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the tools servers can enable with --tools."""
    import json

    from rich.console import Console
    from rich.table import Table

    from nodetool.tools.builtins import builtin_tools

    specs = [tool.spec() for tool in builtin_tools()]
    if as_json:
        typer.echo(json.dumps([spec.model_dump() for spec in specs], indent=2))
        return
    table = Table(title="Tools (enable with --tools name,name or NODETOOL_TOOLS)")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("description")
    table.add_column("parameters")
    for spec in specs:
        table.add_row(spec.name, spec.description, "\n".join(describe_parameters(spec.parameters)))
    console = Console()
    console.print(table)
    console.print(
        "Stored workflows with a tool_name are available as [bold]workflow_<tool_name>[/bold] "
        "(arguments: the workflow's inputs)."
    )
