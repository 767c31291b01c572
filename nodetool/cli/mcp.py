"""`nodetool mcp`: serve the enabled tools and the workflows to an MCP client over stdio."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from nodetool.cli.common import build_settings
from nodetool.cli.servers import McpConfigOpt, WorkflowOpt

DEFAULT_EXCLUDED = ("http_get",)  # reaches the network: enable it explicitly with --tools


def mcp(
    tools: str | None = typer.Option(
        None,
        "--tools",
        help="Tools to offer, comma separated (default: the built-ins except http_get).",
    ),
    workflow: list[Path] | None = WorkflowOpt,
    mcp_config: Path | None = McpConfigOpt,
    provider: str | None = typer.Option(
        None, "--provider", help="Default provider for workflow LLM nodes."
    ),
    default_model: str | None = typer.Option(
        None, "--default-model", help="Model for workflow nodes that name none."
    ),
    log_level: str | None = typer.Option(
        "warning", "--log-level", help="critical | error | warning | info | debug (on stderr)."
    ),
) -> None:
    """Speak MCP over stdin/stdout: tools and every stored or --workflow workflow.

    Claude Desktop, Cursor or any MCP client starts this as a subprocess; stdout carries
    only the protocol, logs go to stderr.
    """
    import asyncio
    import logging
    import sys

    from nodetool.cli.preflight import check_tools

    settings = build_settings(
        tools=tools,
        workflow_files=workflow or None,
        mcp_config=mcp_config,
        default_provider=provider,
        default_model=default_model,
        log_level=log_level,
    )
    if tools is None:
        from nodetool.tools.builtins import builtin_tools

        names = [t.name for t in builtin_tools() if t.name not in DEFAULT_EXCLUDED]
        settings = settings.model_copy(update={"tools": names})
    check_tools(settings)
    level = logging.DEBUG if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s"
    )
    from nodetool.api.mcp_server import serve_stdio

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_stdio(settings, list(settings.tools)))
