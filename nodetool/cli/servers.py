"""`nodetool serve`, `nodetool worker`, `nodetool chat-server`: build an app, run uvicorn."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from nodetool.cli.common import build_settings, err_console, fail

_IMPORT_FACTORIES = {
    "serve": "nodetool.api.apps:editor_app_from_env",
    "worker": "nodetool.api.apps:worker_app_from_env",
    "chat-server": "nodetool.api.apps:chat_server_app_from_env",
}

HostOpt = typer.Option(help="Interface to bind.")
PortOpt = typer.Option(8000, "--port", "-p", min=1, max=65535, help="Port to listen on.")
AuthOpt = typer.Option(
    None, "--auth-provider", help="none | local | static | supabase (env AUTH_PROVIDER)."
)
ProviderOpt = typer.Option(
    None,
    "--provider",
    help="Default provider: local | openai | ollama (env NODETOOL_DEFAULT_PROVIDER).",
)
ModelOpt = typer.Option(
    None,
    "--default-model",
    help="Model used when a request names none (env NODETOOL_DEFAULT_MODEL).",
)
ToolsOpt = typer.Option(
    None,
    "--tools",
    help="Allow-list of server tools, comma separated (`name`, `prefix*`, `*`); default: "
    "offline built-ins on serve, none on worker and chat-server (env NODETOOL_TOOLS).",
)
WorkflowOpt = typer.Option(
    None, "--workflow", help="Workflow JSON file to register at startup (repeatable)."
)
McpConfigOpt = typer.Option(
    None,
    "--mcp-config",
    help='MCP servers whose tools can be enabled: {"mcpServers": {...}} (env NODETOOL_MCP_CONFIG).',
)
ReloadOpt = typer.Option(False, "--reload", help="Reload on code changes (development).")
WorkersOpt = typer.Option(1, "--workers", min=1, help="Worker processes.")
LogOpt = typer.Option(None, "--log-level", help="critical | error | warning | info | debug.")
CorsOpt = typer.Option(None, "--cors-origins", help="Allowed CORS origins, comma separated.")
AliasOpt = typer.Option(
    None,
    "--model-alias",
    help="NAME=TARGET: requests for model NAME route like TARGET, e.g. "
    "gpt-4=local/gemma-3-270m (repeatable; adds to env NODETOOL_MODEL_ALIASES).",
)
HostsOpt = typer.Option(
    None,
    "--allowed-hosts",
    help="Host names this server answers (Host header), comma separated; `serve` defaults "
    "to localhost, 127.0.0.1 and [::1] (env NODETOOL_ALLOWED_HOSTS).",
)
MetricsOpt = typer.Option(
    False, "--public-metrics", help="Serve /metrics without a token when auth is enforced."
)
UiOpt = typer.Option(
    None,
    "--ui/--no-ui",
    help="The web chat at / (serve only; on by default there, env NODETOOL_UI).",
)


def _port_free(host: str, port: int) -> str | None:
    """None when host:port can be bound; otherwise the reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (try --port {port + 1})"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _with_aliases(settings: Any, pairs: list[str] | None) -> Any:
    """`--model-alias` pairs added to (and winning over) NODETOOL_MODEL_ALIASES."""
    if not pairs:
        return settings
    from nodetool.config import parse_aliases

    try:
        added = parse_aliases(pairs)
    except ValueError as exc:
        raise fail(f"invalid value for --model-alias: {exc}", code=2) from None
    return settings.model_copy(update={"model_aliases": {**settings.model_aliases, **added}})


def _launch(
    kind: str,
    host: str,
    port: int,
    reload: bool,
    workers: int,
    model_alias: list[str] | None = None,
    **flags: Any,
) -> None:
    if kind != "serve" and flags.get("web_ui"):
        raise fail(
            "--ui: the web chat needs the /chat WebSocket and /api/threads; use `nodetool serve`",
            code=2,
        )
    from nodetool.config import server_settings

    settings = server_settings(_with_aliases(build_settings(**flags), model_alias), kind)
    if kind == "chat-server" and settings.workflow_files:
        raise fail(
            "chat-server serves no workflows: use --workflow with `nodetool serve` or "
            "`nodetool worker`",
            code=2,
        )
    from nodetool.cli.preflight import check_services, check_startup

    check_services(settings, redis=kind != "chat-server")  # chat-server: stored responses only
    check_startup(settings)  # after the services: no token is generated for a failed start
    problem = _port_free(host, port)
    if problem:
        raise fail(problem)

    import uvicorn

    from nodetool.api.apps import FACTORIES, SETTINGS_ENV
    from nodetool.api.request_id import uvicorn_log_config

    log_level = settings.log_level
    if (settings.database_url or "").startswith("postgres"):
        storage = "postgresql"
    else:
        storage = f"sqlite in {settings.data_dir}"
    err_console().print(
        f"[bold]nodetool {kind}[/bold] on http://{host}:{port} "
        f"(auth: {settings.auth_provider}, storage: {storage})",
        soft_wrap=True,
    )
    if kind == "serve" and settings.web_ui:
        err_console().print(f"web chat: http://{host}:{port}/", soft_wrap=True)
    if not settings.auth_enforced and not _loopback(host):
        err_console().print(
            f"[yellow]warning:[/yellow] AUTH_PROVIDER={settings.auth_provider} on {host}: "
            "anyone who can reach this port can use it without a token",
            soft_wrap=True,
        )
    from nodetool.api.http_protocol import uvicorn_options

    options = uvicorn_options(settings)
    if reload or workers > 1:
        import os

        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        if workers > 1 and not reload:
            _multiprocess_metrics()
        uvicorn.run(
            _IMPORT_FACTORIES[kind],
            factory=True,
            host=host,
            port=port,
            reload=reload,
            reload_dirs=[str(Path(__file__).resolve().parents[1])] if reload else None,
            workers=None if reload else workers,
            log_level=log_level,
            log_config=uvicorn_log_config(),
            **options,
        )
        return
    app = FACTORIES[kind](settings)
    from nodetool.api.gc_tuning import tune_for_serving

    tune_for_serving()
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, log_config=uvicorn_log_config(), **options
    )


def _multiprocess_metrics() -> None:
    """Worker processes write their metrics to a fresh shared directory that `/metrics`
    aggregates (prometheus-client multiprocess mode); it is removed when the server exits."""
    import atexit
    import os
    import shutil
    import tempfile

    from nodetool.api.metrics import MULTIPROC_ENV

    if os.environ.get(MULTIPROC_ENV):
        return
    directory = tempfile.mkdtemp(prefix="nodetool-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _server_command(kind: str, default_host: str, doc: str) -> Callable[..., None]:
    """A Typer command for one server kind: every server takes the same flags."""

    def command(
        host: str = typer.Option(default_host, "--host", help="Interface to bind."),
        port: int = PortOpt,
        auth_provider: str | None = AuthOpt,
        provider: str | None = ProviderOpt,
        default_model: str | None = ModelOpt,
        tools: str | None = ToolsOpt,
        workflow: list[Path] | None = WorkflowOpt,
        mcp_config: Path | None = McpConfigOpt,
        reload: bool = ReloadOpt,
        workers: int = WorkersOpt,
        log_level: str | None = LogOpt,
        cors_origins: str | None = CorsOpt,
        allowed_hosts: str | None = HostsOpt,
        public_metrics: bool = MetricsOpt,
        ui: bool | None = UiOpt,
        model_alias: list[str] | None = AliasOpt,
    ) -> None:
        _launch(
            kind,
            host,
            port,
            reload,
            workers,
            model_alias,
            auth_provider=auth_provider,
            default_provider=provider,
            default_model=default_model,
            tools=tools,
            workflow_files=workflow or None,
            mcp_config=mcp_config,
            log_level=log_level,
            cors_origins=cors_origins,
            allowed_hosts=allowed_hosts,
            public_metrics=public_metrics or None,
            web_ui=ui,
        )

    command.__doc__ = doc
    return command


serve = _server_command(
    "serve",
    "127.0.0.1",
    "Start the editor API: /v1, /chat and /predict WebSockets, threads, workflows.",
)
worker = _server_command(
    "worker",
    "0.0.0.0",
    "Start the deployable worker: /v1 and workflow run endpoints (JSON and SSE). Without "
    "AUTH_PROVIDER it requires a token (static auth; the token is generated and printed once).",
)
chat_server = _server_command(
    "chat-server", "127.0.0.1", "Start the chat-only server: /v1 and health."
)
