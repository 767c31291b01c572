"""One Settings object, built explicitly (environment, `.env`, CLI flags) and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _PydanticSettingsError

from nodetool.types.validation import first_problem

AuthProvider = Literal["none", "local", "static", "supabase"]
DEFAULT_USER = "1"  # the user when auth is off, of the static token, and of stdio MCP
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_data_dir() -> Path:
    """XDG data home for nodetool (`~/.local/share/nodetool`)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "nodetool"


def default_config_dir() -> Path:
    """XDG config home for nodetool (`~/.config/nodetool`)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "nodetool"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def parse_aliases(value: str | list[str] | tuple[str, ...]) -> dict[str, str]:
    """`"a=b,c=d"` (or `["a=b", "c=d"]`) as `{"a": "b", "c": "d"}`; a bad pair is a ValueError."""
    pairs = value.split(",") if isinstance(value, str) else list(value)
    aliases: dict[str, str] = {}
    for pair in pairs:
        if not pair.strip():
            continue
        name, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not name or not target or " " in name or " " in target:
            raise ValueError(f"expected NAME=TARGET, got {pair.strip()!r}")
        if name == target:
            raise ValueError(f"alias {name!r} points to itself")
        aliases[name] = target
    return aliases


class Settings(BaseSettings):
    """Every setting nodetool reads. Table: docs/protocol.md §11."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, case_sensitive=False
    )

    # Auth (docs/protocol.md §10)
    auth_provider: AuthProvider = Field("local", validation_alias=_env("AUTH_PROVIDER"))
    worker_auth_token: str | None = Field(None, validation_alias=_env("WORKER_AUTH_TOKEN"))
    supabase_url: str | None = Field(None, validation_alias=_env("SUPABASE_URL"))
    supabase_key: str | None = Field(None, validation_alias=_env("SUPABASE_KEY"))
    supabase_allow_static_token: bool = Field(
        False, validation_alias=_env("NODETOOL_SUPABASE_ALLOW_STATIC_TOKEN")
    )
    auth_cache_ttl: float = Field(60.0, ge=0, validation_alias=_env("AUTH_CACHE_TTL"))
    auth_cache_max: int = Field(2000, ge=1, validation_alias=_env("AUTH_CACHE_MAX"))
    cors_origins: Annotated[list[str] | None, NoDecode] = Field(
        None, validation_alias=_env("NODETOOL_CORS_ORIGINS")
    )
    public_metrics: bool = Field(False, validation_alias=_env("NODETOOL_PUBLIC_METRICS"))

    # Providers
    openai_api_key: str | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    ollama_host: str | None = Field(None, validation_alias=_env("OLLAMA_HOST"))
    default_provider: str | None = Field(None, validation_alias=_env("NODETOOL_DEFAULT_PROVIDER"))
    default_model: str | None = Field(None, validation_alias=_env("NODETOOL_DEFAULT_MODEL"))
    upstream_timeout: float = Field(120.0, gt=0, validation_alias=_env("NODETOOL_UPSTREAM_TIMEOUT"))
    # connections to one upstream (scheme, host, port) open at once; more requests wait for one
    upstream_max_connections: int = Field(
        256, ge=1, le=65536, validation_alias=_env("NODETOOL_UPSTREAM_MAX_CONNECTIONS")
    )
    local_model_path: Path | None = Field(None, validation_alias=_env("NODETOOL_LOCAL_MODEL_PATH"))
    local_context_size: int = Field(2048, ge=256, validation_alias=_env("NODETOOL_LOCAL_N_CTX"))
    local_threads: int | None = Field(None, ge=1, validation_alias=_env("NODETOOL_LOCAL_THREADS"))
    local_parallel: int = Field(4, ge=1, le=64, validation_alias=_env("NODETOOL_LOCAL_PARALLEL"))
    # reproducible requests (temperature 0 or a seed) decoded alone: llama.cpp's kernels are not
    # batch-invariant, so sharing a batch could change their tokens; false batches them too
    local_reproducible_alone: bool = Field(
        True, validation_alias=_env("NODETOOL_LOCAL_REPRODUCIBLE_ALONE")
    )
    llama_server_path: Path | None = Field(None, validation_alias=_env("NODETOOL_LLAMA_SERVER"))
    # NAME=TARGET pairs: a request for NAME routes like TARGET (`local/gemma-3-270m`, `gpt-4o`)
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias=_env("NODETOOL_MODEL_ALIASES")
    )

    # Storage
    data_dir: Path = Field(
        default_factory=default_data_dir, validation_alias=_env("NODETOOL_DATA_DIR")
    )
    config_dir: Path = Field(
        default_factory=default_config_dir, validation_alias=_env("NODETOOL_CONFIG_DIR")
    )
    database_url: str | None = Field(None, validation_alias=_env("NODETOOL_DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("NODETOOL_REDIS_URL"))
    redis_prefix: str = Field(
        "nodetool", min_length=1, max_length=64, validation_alias=_env("NODETOOL_REDIS_PREFIX")
    )

    # Workflow jobs (docs/jobs.md)
    max_concurrent_jobs: int = Field(
        8, ge=1, le=1024, validation_alias=_env("NODETOOL_MAX_CONCURRENT_JOBS")
    )
    job_max_attempts: int = Field(
        2, ge=1, le=100, validation_alias=_env("NODETOOL_JOB_MAX_ATTEMPTS")
    )
    job_claim_idle: float = Field(
        5.0, ge=0.5, le=3600, validation_alias=_env("NODETOOL_JOB_CLAIM_IDLE")
    )

    # Server behaviour
    log_level: LogLevel = Field("info", validation_alias=_env("NODETOOL_LOG_LEVEL"))
    tools: Annotated[list[str] | None, NoDecode] = Field(
        None, validation_alias=_env("NODETOOL_TOOLS")
    )  # None: the server kind's default set (tools/registry.py)
    workflow_files: list[Path] = Field(default_factory=list)
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, validation_alias=_env("NODETOOL_MAX_BODY_BYTES")
    )
    max_frame_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("NODETOOL_MAX_FRAME_BYTES")
    )
    keepalive_interval: float = Field(
        10.0, gt=0, validation_alias=_env("NODETOOL_KEEPALIVE_INTERVAL")
    )
    ws_heartbeat_interval: float = Field(25.0, gt=0, validation_alias=_env("NODETOOL_WS_HEARTBEAT"))
    client_tool_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("NODETOOL_CLIENT_TOOL_TIMEOUT")
    )
    max_tool_rounds: int = Field(10, ge=1, validation_alias=_env("NODETOOL_MAX_TOOL_ROUNDS"))
    max_concurrent_completions: int = Field(
        1024, ge=1, validation_alias=_env("NODETOOL_MAX_CONCURRENT_COMPLETIONS")
    )
    http_get_allow_private: bool = Field(
        False, validation_alias=_env("NODETOOL_HTTP_GET_ALLOW_PRIVATE")
    )
    history_limit: int = Field(200, ge=1, validation_alias=_env("NODETOOL_HISTORY_LIMIT"))
    # MCP servers whose tools can be enabled (`{"mcpServers": {...}}`, docs/mcp.md)
    mcp_config: Path | None = Field(None, validation_alias=_env("NODETOOL_MCP_CONFIG"))
    mcp_timeout: float = Field(60.0, gt=0, validation_alias=_env("NODETOOL_MCP_TIMEOUT"))
    mcp_start_timeout: float = Field(
        30.0, gt=0, validation_alias=_env("NODETOOL_MCP_START_TIMEOUT")
    )
    web_ui: bool = Field(True, validation_alias=_env("NODETOOL_UI"))  # the web chat on serve

    # Workflow limits (docs/workflow-limits.md; built into `workflows.limits.WorkflowLimits`)
    workflow_node_cpu_seconds: float = Field(
        10.0, gt=0, validation_alias=_env("NODETOOL_WORKFLOW_NODE_CPU_SECONDS")
    )
    workflow_job_cpu_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("NODETOOL_WORKFLOW_JOB_CPU_SECONDS")
    )
    workflow_node_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("NODETOOL_WORKFLOW_NODE_TIMEOUT")
    )
    workflow_node_memory_mb: int = Field(
        512, ge=64, validation_alias=_env("NODETOOL_WORKFLOW_NODE_MEMORY_MB")
    )
    workflow_node_output_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("NODETOOL_WORKFLOW_NODE_OUTPUT_BYTES")
    )
    workflow_job_output_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias=_env("NODETOOL_WORKFLOW_JOB_OUTPUT_BYTES")
    )
    workflow_job_result_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("NODETOOL_WORKFLOW_JOB_RESULT_BYTES")
    )
    workflow_job_memory_mb: int = Field(
        128, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_JOB_MEMORY_MB")
    )
    workflow_processes: int = Field(2, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_PROCESSES"))
    workflow_threads: int = Field(8, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_THREADS"))
    workflow_max_range: int = Field(
        10_000, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_MAX_RANGE")
    )
    workflow_max_power_bits: int = Field(
        100_000, ge=64, validation_alias=_env("NODETOOL_WORKFLOW_MAX_POWER_BITS")
    )
    workflow_max_foreach_items: int = Field(
        10_000, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_MAX_FOREACH_ITEMS")
    )
    workflow_max_nodes: int = Field(
        2_000, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_MAX_NODES")
    )
    workflow_max_edges: int = Field(
        5_000, ge=1, validation_alias=_env("NODETOOL_WORKFLOW_MAX_EDGES")
    )
    workflow_max_graph_bytes: int = Field(
        512 * 1024, ge=1024, validation_alias=_env("NODETOOL_WORKFLOW_MAX_GRAPH_BYTES")
    )

    # Security limits (docs/security.md)
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None, validation_alias=_env("NODETOOL_ALLOWED_HOSTS")
    )  # None: loopback names on `serve`, any host on worker and chat-server
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, validation_alias=_env("NODETOOL_MAX_HEADER_BYTES")
    )
    max_headers: int = Field(100, ge=8, validation_alias=_env("NODETOOL_MAX_HEADERS"))
    header_timeout: float = Field(10.0, gt=0, validation_alias=_env("NODETOOL_HEADER_TIMEOUT"))
    body_timeout: float = Field(30.0, gt=0, validation_alias=_env("NODETOOL_BODY_TIMEOUT"))
    max_pending_connections: int = Field(
        256, ge=1, validation_alias=_env("NODETOOL_MAX_PENDING_CONNECTIONS")
    )
    auth_negative_cache_ttl: float = Field(
        300.0, ge=0, validation_alias=_env("AUTH_NEGATIVE_CACHE_TTL")
    )
    auth_max_concurrency: int = Field(8, ge=1, validation_alias=_env("AUTH_MAX_CONCURRENCY"))
    auth_rate_per_client: float = Field(
        5.0, gt=0, validation_alias=_env("AUTH_RATE_PER_CLIENT")
    )  # token checks per second that miss the cache, per client address
    auth_rate_burst: int = Field(20, ge=1, validation_alias=_env("AUTH_RATE_BURST"))

    @field_validator("tools", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        return parse_aliases(value) if isinstance(value, str | list | tuple) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def effective_database_url(self) -> str:
        """SQLAlchemy async URL: the configured one, else SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'nodetool.db'}"

    @property
    def auth_enforced(self) -> bool:
        return self.auth_provider in ("static", "supabase")


def server_settings(settings: Settings, kind: str) -> Settings:
    """`settings` with the defaults that depend on the server kind filled in.

    `nodetool worker` without an explicit AUTH_PROVIDER uses static auth (a token), never open.
    """
    if kind == "worker" and "auth_provider" not in settings.model_fields_set:
        return settings.model_copy(update={"auth_provider": "static"})
    return settings


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the setting."""


def _setting_name(loc: tuple[Any, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    info = Settings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`; non-None overrides (CLI flags) win."""
    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problem = first_problem(exc)
        name = _setting_name(problem.path)
        raise SettingsError(f"invalid value for {name}: {problem.message}") from None
    except _PydanticSettingsError as exc:
        raise SettingsError(str(exc)) from None
