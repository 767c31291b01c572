"""`nodetool tools`: the available tools and their parameters."""

from __future__ import annotations

import typer


def tools(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the tools servers can enable with --tools."""
    raise NotImplementedError  # Tools issue
