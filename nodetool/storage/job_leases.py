"""Job leases on PostgreSQL: the `jobs` table as the queue when there is no Redis.

A process takes a job by setting `owner` (its instance id) and `lease_until` (database time
plus the lease length) on rows picked with `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent
takers never get the same row. While it runs the job it renews the lease; a lease that ran out
(the process died, or could not reach the database) lets another process claim the job.
All times are the database server's clock (`now()`), so hosts' clocks never disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.storage.db import Database

# rows another process may take: queued and not leased (a lease on a queued job is a taker
# that died before starting it), or running with a lease that ran out (its runner is gone)
_TAKE = "status = 'queued' AND (lease_until IS NULL OR lease_until < now())"
_CLAIM = "status = 'running' AND lease_until < now()"

_LEASE_SQL = """
UPDATE jobs SET owner = :owner, lease_until = now() + make_interval(secs => :lease)
WHERE id IN (
    SELECT id FROM jobs WHERE {condition} ORDER BY id LIMIT :count FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

_RENEW_SQL = """
UPDATE jobs SET lease_until = now() + make_interval(secs => :lease)
WHERE id = ANY(:ids) AND owner = :owner
RETURNING id
"""


class SqlJobLeases:
    """Take, claim and renew job leases (PostgreSQL only: `SKIP LOCKED`, `now()`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def supported(self) -> bool:
        return self._db.dialect == "postgresql"

    async def take(self, owner: str, count: int, lease: float) -> list[str]:
        """Lease up to `count` queued jobs, oldest first; their ids."""
        return await self._lease(_TAKE, owner, count, lease)

    async def claim(self, owner: str, count: int, lease: float) -> list[str]:
        """Lease up to `count` running jobs whose lease ran out; their ids."""
        return await self._lease(_CLAIM, owner, count, lease)

    async def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        """Extend `owner`'s leases on `job_ids`; the ids still leased by `owner`."""
        if not job_ids:
            return set()
        params = {"owner": owner, "ids": list(job_ids), "lease": float(lease)}
        return set(await self._ids(_RENEW_SQL, params))

    async def _lease(self, condition: str, owner: str, count: int, lease: float) -> list[str]:
        if count <= 0:
            return []
        params = {"owner": owner, "count": int(count), "lease": float(lease)}
        return await self._ids(_LEASE_SQL.format(condition=condition), params)

    async def _ids(self, sql: str, params: dict[str, Any]) -> list[str]:
        async def run(conn: AsyncConnection) -> list[str]:
            return [row.id for row in await conn.execute(text(sql), params)]

        return await self._db.run_write(run)
