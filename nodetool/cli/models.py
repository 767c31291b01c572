"""`nodetool models`: every configured provider's models."""

from __future__ import annotations

import typer

from nodetool.cli.common import build_settings, fail


def models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models of every configured provider."""
    import asyncio
    import json

    from nodetool.providers.registry import ProviderRegistry

    settings = build_settings()

    async def gather() -> tuple[list[str], str, list[dict]]:
        registry = await ProviderRegistry.create(settings)
        try:
            found = await registry.list_models()
            return registry.names(), registry.default_provider, [m.model_dump() for m in found]
        finally:
            await registry.aclose()

    names, default, rows = asyncio.run(gather())
    if as_json:
        typer.echo(json.dumps({"providers": names, "default_provider": default, "models": rows}))
        return
    if not names:
        from nodetool.providers.registry import describe_missing_default

        raise fail(describe_missing_default(settings) or "no provider is configured")
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"models (providers: {', '.join(names)}; default: {default})")
    table.add_column("id", style="bold", overflow="fold")
    table.add_column("provider")
    table.add_column("routable as", overflow="fold")
    table.add_column("owned by", overflow="fold")
    table.add_column("serves")
    for row in rows:
        routable = row["id"] if row.get("alias_of") else f"{row['provider']}/{row['id']}"
        serves = ", ".join(row.get("capabilities") or ["chat"])
        cells = (row["id"], row["provider"], routable, row["owned_by"], serves)
        table.add_row(*(escape(cell) for cell in cells))
        if row.get("status"):
            table.add_row("", "", f"[red]unavailable: {escape(row['status'])}[/]", "")
    Console().print(table)
    missing = sorted(set(names) - {row["provider"] for row in rows})
    if missing:
        Console(stderr=True).print(f"[yellow]could not list models of: {', '.join(missing)}[/]")
