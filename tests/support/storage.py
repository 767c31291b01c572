"""Helpers for the storage tests: PostgreSQL availability, throwaway databases, settings.

Each PostgreSQL-backed module gets its own freshly created database on the local server
(dropped afterwards), so runs never see each other's rows. `NODETOOL_TEST_POSTGRES_URL`
overrides the server (default `postgresql://postgres@127.0.0.1:5432/test`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nodetool.config import Settings
from tests.support.needs import POSTGRES, missing

ADMIN_URL = os.environ.get(
    "NODETOOL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_unavailable: list[str] = []  # the reason, once PostgreSQL was found unusable


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _try_connect() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _start_local_clusters() -> None:
    """Try `pg_ctlcluster <version> main start` for each installed PostgreSQL version."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


async def require_postgres() -> None:
    """Skip (fail under CI=true) unless PostgreSQL answers, starting the local cluster if needed."""
    if _unavailable:
        missing(_unavailable[0], POSTGRES)
    problem = await _try_connect()
    if problem is not None:
        await asyncio.to_thread(_start_local_clusters)
        for _ in range(20):
            problem = await _try_connect()
            if problem is None:
                break
            await asyncio.sleep(0.5)
    if problem is not None:
        _unavailable.append(f"PostgreSQL at {ADMIN_URL} is not reachable: {problem}")
        missing(_unavailable[0], POSTGRES)


@asynccontextmanager
async def temp_postgres_database() -> AsyncIterator[str]:
    """A new empty database on the test server; dropped on exit. Yields its URL."""
    import asyncpg

    await require_postgres()
    name = f"nodetool_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def backend_settings(backend: str, tmp_dir: Path) -> AsyncIterator[Settings]:
    """Settings whose store is a fresh SQLite file under `tmp_dir` or a fresh PG database."""
    if backend == "sqlite":
        yield Settings(data_dir=tmp_dir / "data", database_url=None, _env_file=None)
        return
    async with temp_postgres_database() as url:
        yield Settings(data_dir=tmp_dir / "data", database_url=url, _env_file=None)
