"""Checks before a server starts: settings that cannot work give one clear message, exit 2."""

from __future__ import annotations

from nodetool.cli.common import fail
from nodetool.config import Settings

_CONNECT_TIMEOUT = 5.0


def check_startup(settings: Settings) -> None:
    """Refuse configurations that cannot serve (e.g. supabase without its URL and key)."""
    if settings.auth_provider == "supabase" and not (
        settings.supabase_url and settings.supabase_key
    ):
        raise fail("AUTH_PROVIDER=supabase needs SUPABASE_URL and SUPABASE_KEY to be set", code=2)
    from nodetool.api.auth.tokens import AuthConfigError, ensure_static_token, uses_static_token

    if uses_static_token(settings):
        try:  # resolve (and print, once) the token before any worker process starts
            ensure_static_token(settings)
        except AuthConfigError as exc:
            raise fail(str(exc), code=2) from None
    check_tools(settings)
    from nodetool.providers.registry import describe_missing_default

    problem = describe_missing_default(settings)
    if problem:
        raise fail(problem, code=2)


def check_tools(settings: Settings) -> None:
    """The MCP config, `--tools` (MCP servers they name are started once to check them) and
    `--workflow` files; each problem is one line, exit 2."""
    if settings.mcp_config is not None:
        from nodetool.tools.mcp_config import McpConfigError, load_mcp_config

        try:
            load_mcp_config(settings.mcp_config)
        except McpConfigError as exc:
            raise fail(f"--mcp-config: {exc.message}", code=2) from None
    if settings.tools:
        from nodetool.errors import InvalidRequestError
        from nodetool.tools.registry import build_tool_registry

        try:
            build_tool_registry(settings, None)
        except InvalidRequestError as exc:
            raise fail(f"--tools: {exc.message}", code=2) from None
        problem = _check_mcp_tools(settings)
        if problem:
            raise fail(f"--tools: {problem}", code=2)
    for path in settings.workflow_files:
        from nodetool.errors import WorkflowError
        from nodetool.workflows.jobs import read_workflow_file

        try:
            read_workflow_file(path)
        except WorkflowError as exc:
            raise fail(f"--workflow {path}: {exc.message}", code=2) from None


def _check_mcp_tools(settings: Settings) -> str | None:
    """Start the MCP servers `--tools` names and check their tools exist; the first problem."""
    names = [name for name in settings.tools if name.startswith("mcp__")]
    if not names:
        return None
    import asyncio

    from nodetool.errors import InvalidRequestError
    from nodetool.tools.mcp_tools import UnavailableMcpTool
    from nodetool.tools.registry import build_tool_registry

    async def check() -> str | None:
        registry = build_tool_registry(settings, None)
        assert registry.mcp is not None
        try:
            for name in names:
                try:
                    tool = await registry.mcp.tool(name)
                except InvalidRequestError as exc:
                    return exc.message
                if isinstance(tool, UnavailableMcpTool):
                    return tool.error
            return None
        finally:
            await registry.aclose()

    return asyncio.run(check())


def check_services(settings: Settings, *, redis: bool = True) -> None:
    """The database and (with `redis`) Redis a server will use: a bad URL or an unreachable
    server is one line naming the setting and exit code 2, not a traceback from startup."""
    import asyncio

    problem = asyncio.run(_service_problem(settings, redis))
    if problem:
        raise fail(problem, code=2)


async def _service_problem(settings: Settings, redis: bool) -> str | None:
    from nodetool.config import SettingsError
    from nodetool.storage.db import database_url

    try:
        url = database_url(settings)
    except SettingsError as exc:
        return str(exc)
    if url.startswith("postgresql"):
        problem = await _postgres_problem("postgresql://" + url.partition("://")[2])
        if problem:
            return f"NODETOOL_DATABASE_URL: cannot connect to PostgreSQL ({problem})"
    if redis and settings.redis_url:
        return await _redis_problem(settings.redis_url)
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _postgres_problem(dsn: str) -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed: pip install 'nodetool[postgres]'"
    try:
        conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    except Exception as exc:  # refused, unknown host, auth, missing database, bad DSN
        return _reason(exc)
    await conn.close()
    return None


async def _redis_problem(url: str) -> str | None:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        return "NODETOOL_REDIS_URL is set but redis is not installed: pip install 'nodetool[redis]'"
    try:
        client = aioredis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT)
    except ValueError as exc:
        return f"invalid value for NODETOOL_REDIS_URL: {exc}"
    try:
        await client.ping()
    except Exception as exc:  # refused, unknown host, auth, timeout
        return f"NODETOOL_REDIS_URL: cannot reach Redis ({_reason(exc)})"
    finally:
        await client.aclose()
    return None
