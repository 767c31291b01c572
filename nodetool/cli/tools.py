"""`nodetool tools`: the available tools and their parameters."""

from __future__ import annotations

from pathlib import Path
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
    mcp_config: Path | None = typer.Option(
        None,
        "--mcp-config",
        help="Also list the tools of these MCP servers (started for the listing; "
        "env NODETOOL_MCP_CONFIG).",
    ),
) -> None:
    """List the tools servers can enable with --tools."""
    import json

    from rich.console import Console
    from rich.table import Table

    from nodetool.cli.common import build_settings, fail
    from nodetool.tools.builtins import builtin_tools

    rows: list[dict[str, Any]] = [
        {**tool.spec().model_dump(), "server": None} for tool in builtin_tools()
    ]
    settings = build_settings(mcp_config=mcp_config)
    if settings.mcp_config is not None:
        from nodetool.tools.mcp_config import McpConfigError

        try:
            rows += _mcp_rows(settings)
        except McpConfigError as exc:
            raise fail(f"--mcp-config: {exc.message}", code=2) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Tools (enable with --tools name,name or NODETOOL_TOOLS)")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("server", no_wrap=True)
    table.add_column("description")
    table.add_column("parameters")
    for row in rows:
        server = row["server"]
        table.add_row(
            row["name"],
            f"MCP {server}" if server else "built-in",
            row["description"],
            "\n".join(describe_parameters(row["parameters"])) if "error" not in row else "",
        )
    console = Console()
    console.print(table)
    console.print(
        "Stored workflows with a tool_name are available as [bold]workflow_<tool_name>[/bold] "
        "(arguments: the workflow's inputs)."
    )


def _mcp_rows(settings: Any) -> list[dict[str, Any]]:
    """One row per tool of every configured MCP server; a server that cannot start is one
    row naming the reason."""
    import asyncio

    from nodetool.tools.mcp_client import McpStartError
    from nodetool.tools.mcp_tools import McpHub

    async def collect() -> list[dict[str, Any]]:
        hub = McpHub.from_settings(settings)
        assert hub is not None
        rows: list[dict[str, Any]] = []
        try:
            for server in hub.connections:
                try:
                    found = await hub.server_tools(server)
                except McpStartError as exc:
                    rows.append(
                        {
                            "name": f"mcp__{server}__*",
                            "description": exc.message,
                            "parameters": {},
                            "server": server,
                            "error": exc.message,
                        }
                    )
                    continue
                rows += [{**tool.spec().model_dump(), "server": server} for tool in found]
        finally:
            await hub.aclose()
        return rows

    return asyncio.run(collect())
