"""Async persistence: threads, messages, workflows, jobs, responses (SQLite by default, or
PostgreSQL).

`open_store(settings)` opens the configured database, migrates it to the current schema and
returns a `Store` (see `base.py`). SQLAlchemy is imported only when a store is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodetool.storage.base import JobStore, MessageStore, Store, ThreadStore, WorkflowStore

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.storage.responses import SqlResponseStore


async def open_store(settings: Settings) -> Store:
    """The store for `settings.database_url` (PostgreSQL) or the data dir's SQLite file."""
    from nodetool.storage.sql_store import open_sql_store

    return await open_sql_store(settings)


async def open_response_store(settings: Settings) -> SqlResponseStore:
    """Only the stored `/v1/responses`, on the same database `open_store` would open."""
    from nodetool.storage.responses import SqlResponseStore

    return await SqlResponseStore.open(settings)


__all__ = [
    "JobStore",
    "MessageStore",
    "Store",
    "ThreadStore",
    "WorkflowStore",
    "open_response_store",
    "open_store",
]
