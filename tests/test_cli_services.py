"""A server whose database or Redis cannot work says so in one line naming the setting and
exits with code 2 before it listens (real processes, real refused connections)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.servers import free_port


def start(kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    values = {**os.environ, "NODETOOL_DEFAULT_PROVIDER": "openai"}
    values["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
    values.update(env)
    return subprocess.run(
        [sys.executable, "-m", "nodetool", kind, "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=values,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"NODETOOL_DATABASE_URL": "mysql://user@host/db"},
            "error: invalid value for NODETOOL_DATABASE_URL: unsupported scheme 'mysql'",
        ),
        (
            {"NODETOOL_REDIS_URL": "http://x"},
            "error: invalid value for NODETOOL_REDIS_URL: Redis URL must specify one of",
        ),
        (
            {"NODETOOL_DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/test"},
            "error: NODETOOL_DATABASE_URL: cannot connect to PostgreSQL (",
        ),
        (
            {"NODETOOL_REDIS_URL": "redis://127.0.0.1:{port}/0"},
            "error: NODETOOL_REDIS_URL: cannot reach Redis (",
        ),
    ],
    ids=["database-scheme", "redis-scheme", "postgres-unreachable", "redis-unreachable"],
)
def test_bad_storage_settings_are_one_line_and_exit_2(env: dict, line: str) -> None:
    port = free_port()  # nothing listens there
    proc = start("serve", **{name: value.format(port=port) for name, value in env.items()})
    assert proc.returncode == 2, proc.stderr
    lines = [text for text in proc.stderr.splitlines() if text.strip()]
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr


def test_the_worker_checks_too() -> None:
    proc = start("worker", NODETOOL_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: NODETOOL_REDIS_URL: cannot reach Redis (")


def test_the_chat_server_checks_its_database() -> None:
    """chat-server stores /v1/responses in the database, so a bad one stops it too."""
    port = free_port()
    proc = start("chat-server", NODETOOL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/x")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: NODETOOL_DATABASE_URL: cannot connect to")
