"""`nodetool token`: print or rotate the static auth token."""

from __future__ import annotations

import typer


def token(
    rotate: bool = typer.Option(False, "--rotate", help="Replace the token with a new one."),
) -> None:
    """Print the static auth token (creating it if needed)."""
    raise NotImplementedError  # Auth issue
