"""`nodetool doctor`: one table of what this machine has and whether each part works."""

from __future__ import annotations

import typer

from nodetool.cli.common import build_settings

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check Python, the llama.cpp build against this CPU, the model (one real token in a
    throw-away process), the database, Redis and every configured provider. Exit code 1 when
    something the configuration needs is broken."""
    import asyncio
    import json
    from dataclasses import asdict

    from nodetool.cli.doctor_checks import run_checks

    settings = build_settings()
    checks = asyncio.run(run_checks(settings))
    broken = [c for c in checks if c.status == "fail" and c.needed]
    if as_json:
        typer.echo(json.dumps({"ok": not broken, "checks": [asdict(c) for c in checks]}))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="nodetool doctor")
        table.add_column("part", style="bold")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in checks:
            status = check.status if check.needed or check.status != "fail" else "fail (unused)"
            style = _STYLE[check.status]
            table.add_row(check.name, f"[{style}]{status}[/]", escape(check.detail))
        Console().print(table)
    if broken:
        raise typer.Exit(1)
