"""`nodetool models`: every configured provider's models."""

from __future__ import annotations

import typer


def models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models of every configured provider."""
    raise NotImplementedError  # Providers issue
