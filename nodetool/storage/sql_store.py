"""The SQL Store: every store of the service over one migrated database (SQLite or PostgreSQL)."""

from __future__ import annotations

from nodetool.config import Settings
from nodetool.storage.db import Database
from nodetool.storage.job_leases import SqlJobLeases
from nodetool.storage.jobs import SqlJobStore
from nodetool.storage.messages import SqlMessageStore
from nodetool.storage.migrations import migrated
from nodetool.storage.responses import SqlResponseStore
from nodetool.storage.threads import SqlThreadStore
from nodetool.storage.workflows import SqlWorkflowStore


class SqlStore:
    """Implements `nodetool.storage.base.Store`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.threads = SqlThreadStore(db)
        self.messages = SqlMessageStore(db)
        self.workflows = SqlWorkflowStore(db)
        self.jobs = SqlJobStore(db)
        self.job_leases = SqlJobLeases(db)
        self.responses = SqlResponseStore(db)

    @classmethod
    async def open(cls, db: Database) -> SqlStore:
        """Migrate the database to the current schema and wrap it."""
        return cls(await migrated(db))

    async def close(self) -> None:
        await self.db.dispose()


async def open_sql_store(settings: Settings) -> SqlStore:
    return await SqlStore.open(Database.from_settings(settings))
