"""`nodetool chat`: the terminal client."""

from __future__ import annotations

import typer


def chat(
    ws: bool = typer.Option(False, "--ws", help="Use the /chat WebSocket instead of HTTP."),
) -> None:
    """Chat with a nodetool server from the terminal."""
    raise NotImplementedError  # Chat client issue
