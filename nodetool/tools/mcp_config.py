"""MCP client configuration and tool names.

The file has the form Claude Desktop uses::

    {"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"], "env": {}},
                    "remote": {"url": "https://example.com/mcp", "headers": {"X-Key": "..."}}}}

A server's tool `get_current_time` is offered to models as `mcp__time__get_current_time`.
Every problem is an `McpConfigError` naming the file and the server.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nodetool.errors import InvalidRequestError
from nodetool.types.validation import first_problem

PREFIX = "mcp__"
SEPARATOR = "__"
MAX_NAME = 64  # OpenAI's limit for function names
_SERVER_NAME = re.compile(r"^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$")  # no "__", no edge "_"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")


class McpConfigError(InvalidRequestError):
    """The MCP configuration cannot be used; the message names the file and server."""


class McpServerSpec(BaseModel):
    """One entry of `mcpServers`: a local command (stdio) or a Streamable HTTP URL."""

    model_config = ConfigDict(extra="ignore")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds per tool call.")
    disabled: bool = False

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if bool(self.command) == bool(self.url):
            raise ValueError("give either `command` (stdio) or `url` (Streamable HTTP)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("`url` must start with http:// or https://")
        if self.type == "stdio" and not self.command:
            raise ValueError("type 'stdio' needs `command`")
        if self.type not in (None, "stdio") and not self.url:
            raise ValueError(f"type {self.type!r} needs `url`")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    def describe(self) -> str:
        """`command args…` or the URL, for listings and messages."""
        if self.command:
            return " ".join([self.command, *self.args])
        return str(self.url)


def load_mcp_config(path: Path) -> dict[str, McpServerSpec]:
    """The enabled servers of a config file, by name, in file order."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"{path}: cannot read MCP config ({exc.strerror})") from None
    except ValueError as exc:
        raise McpConfigError(f"{path}: not valid JSON ({exc})") from None
    servers = raw.get("mcpServers") if isinstance(raw, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f'{path}: expected an object {{"mcpServers": {{NAME: {{...}}}}}}')
    specs: dict[str, McpServerSpec] = {}
    for name, entry in servers.items():
        if not _SERVER_NAME.match(name):
            raise McpConfigError(
                f"{path}: MCP server name {name!r} may use letters, digits, '-' and single '_'"
            )
        try:
            spec = McpServerSpec.model_validate(entry)
        except ValidationError as exc:
            problem = first_problem(exc, McpServerSpec)
            where = f"{problem.param}: " if problem.param else ""
            raise McpConfigError(f"{path}: MCP server {name!r}: {where}{problem.message}") from None
        if not spec.disabled:
            specs[name] = spec
    return specs


def tool_name(server: str, tool: str) -> str:
    """`mcp__<server>__<tool>`, made a valid function name (a hash keeps long names unique)."""
    name = f"{PREFIX}{server}{SEPARATOR}{_INVALID.sub('_', tool)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(tool.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def split_name(name: str) -> tuple[str, str] | None:
    """(server, tool part) of an `mcp__<server>__<tool>` name, else None."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition(SEPARATOR)
    if not sep or not server or not tool:
        return None
    return server, tool


def server_of(name: str) -> str | None:
    """The server part of an MCP tool name, else None."""
    parts = split_name(name)
    return parts[0] if parts else None


def leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def one_line(exc: BaseException) -> str:
    """A one-line description of a (possibly grouped) exception, never a traceback."""
    exc = leaf(exc)
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


def schema_of(raw: Any) -> dict[str, Any]:
    """A tool's input schema as an object schema (some servers omit `type`)."""
    schema = dict(raw) if isinstance(raw, dict) else {}
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema
