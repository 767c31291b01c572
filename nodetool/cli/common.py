"""Shared CLI helpers: building Settings from flags with one-line errors."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear red line on stderr; return the Exit to raise."""
    from rich.markup import escape

    err_console().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def build_settings(**overrides: Any):  # -> nodetool.config.Settings
    """Settings from environment + `.env`, CLI flags winning; bad values exit 2 with one line."""
    from nodetool.config import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise fail(str(exc), code=2) from None
