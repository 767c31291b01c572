"""MCP test helpers: config files for the real `mcp-server-time` and the stub MCP server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.support.servers import REPO

PYTHON = sys.executable
TIME_SERVER = {"command": PYTHON, "args": ["-m", "mcp_server_time"]}
STUB_SERVER = {
    "command": PYTHON,
    "args": ["-m", "tests.stubs.mcp_stub_server"],
    "cwd": str(REPO),
    "env": {"PYTHONPATH": str(REPO)},
}


def write_config(path: Path, **servers: dict[str, Any]) -> Path:
    """A Claude Desktop style `{"mcpServers": {...}}` file."""
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path
