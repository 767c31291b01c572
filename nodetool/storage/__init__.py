"""Async persistence: threads, messages, workflows, jobs (SQLite by default, or PostgreSQL).

`open_store(settings)` opens the configured database, migrates it to the current schema and
returns a `Store` (see `base.py`). SQLAlchemy is imported only when a store is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodetool.storage.base import JobStore, MessageStore, Store, ThreadStore, WorkflowStore

if TYPE_CHECKING:
    from nodetool.config import Settings


async def open_store(settings: Settings) -> Store:
    """The store for `settings.database_url` (PostgreSQL) or the data dir's SQLite file."""
    from nodetool.storage.sql_store import open_sql_store

    return await open_sql_store(settings)


__all__ = ["JobStore", "MessageStore", "Store", "ThreadStore", "WorkflowStore", "open_store"]
