"""SQL JobStore: workflow jobs and their ordered events (kept for reconnect/replay)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import InvalidRequestError, NotFoundError
from nodetool.storage.base import FINISHED_JOB_STATUSES, JOB_STATUSES, Record
from nodetool.storage.codec import check_str, dumps, dumps_or_none, iso, loads, now
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.schema import job_events, jobs

_INTERNAL = ("event_seq", "owner", "heartbeat_at")  # bookkeeping, not part of job records
_COLUMNS = tuple(column for column in jobs.c if column.name not in _INTERNAL)
_UNFINISHED = ("queued", "running")


def _record(row: Any) -> Record:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "workflow_id": row.workflow_id,
        "thread_id": row.thread_id,
        "status": row.status,
        "params": loads(row.params),
        "graph": loads(row.graph),
        "results": loads(row.results),
        "error": row.error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
    }


class SqlJobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        user_id: str,
        workflow_id: str | None,
        params: Record,
        thread_id: str | None = None,
        graph: Record | None = None,
        owner: str | None = None,
    ) -> Record:
        if not isinstance(params, dict):
            raise InvalidRequestError("params must be an object", param="params")
        if graph is not None and not isinstance(graph, dict):
            raise InvalidRequestError("graph must be an object", param="graph")
        stamp = now()
        values = {
            "id": new_id(),
            "user_id": user_id,
            "workflow_id": check_str(workflow_id, "workflow_id", 128),
            "thread_id": check_str(thread_id, "thread_id", 128),
            "status": "queued",
            "params": dumps(params),
            "graph": dumps_or_none(graph),
            "created_at": stamp,
            "updated_at": stamp,
            "owner": check_str(owner, "owner", 300),
            "heartbeat_at": None if owner is None else stamp,
        }

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(insert(jobs).values(values))

        await self._db.run_write(run)
        record = {key: values[key] for key in ("id", "user_id", "workflow_id", "thread_id")}
        record.update(
            status="queued",
            params=loads(values["params"]),
            graph=loads(values["graph"]),
            results=None,
            error=None,
            created_at=iso(stamp),
            updated_at=iso(stamp),
            started_at=None,
            finished_at=None,
        )
        return record

    async def update(
        self,
        job_id: str,
        *,
        status: str | None = None,
        results: Any = None,
        error: str | None = None,
    ) -> Record:
        stamp = now()
        values: dict[str, Any] = {"updated_at": stamp}
        if status is not None:
            if status not in JOB_STATUSES:
                raise InvalidRequestError(
                    f"status must be one of {', '.join(JOB_STATUSES)}", param="status"
                )
            values["status"] = status
        if results is not None:
            values["results"] = dumps(results)
        if error is not None:
            values["error"] = str(error)

        async def run(conn: AsyncConnection) -> Any:
            query = select(jobs.c.started_at, jobs.c.finished_at).where(jobs.c.id == job_id)
            current = (await conn.execute(query)).first()
            if current is None:
                return None
            if status == "running" and current.started_at is None:
                values["started_at"] = stamp
            if status in FINISHED_JOB_STATUSES and current.finished_at is None:
                values["finished_at"] = stamp
            # A finished job is final (e.g. cancelled from another process): the guard sits in
            # the UPDATE itself so a concurrent finish cannot slip between check and write.
            unfinished = jobs.c.status.notin_(FINISHED_JOB_STATUSES)
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, unfinished)
                .values(values)
                .returning(*_COLUMNS)
            )
            row = result.first()
            if row is None:
                row = (await conn.execute(select(*_COLUMNS).where(jobs.c.id == job_id))).one()
            return row

        row = await self._db.run_write(run)
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        return _record(row)

    async def get(self, user_id: str, job_id: str) -> Record | None:
        row = await self._db.first(
            select(*_COLUMNS).where(jobs.c.id == job_id, jobs.c.user_id == user_id)
        )
        return None if row is None else _record(row)

    async def add_event(self, job_id: str, event: Record) -> int:
        if not isinstance(event, dict):
            raise InvalidRequestError("event must be an object", param="event")
        text = dumps(event)

        async def run(conn: AsyncConnection) -> int | None:
            # The counter row update is atomic and locks the job row, so concurrent writers
            # (even in other processes) get distinct, increasing numbers.
            seq = (
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(event_seq=jobs.c.event_seq + 1)
                    .returning(jobs.c.event_seq)
                )
            ).scalar()
            if seq is None:
                return None
            await conn.execute(
                insert(job_events).values(job_id=job_id, seq=seq, event=text, created_at=now())
            )
            return int(seq)

        seq = await self._db.run_write(run)
        if seq is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        return seq

    async def add_events(self, job_id: str, events: list[Record]) -> list[int]:
        if not events:
            return []
        if not all(isinstance(event, dict) for event in events):
            raise InvalidRequestError("every event must be an object", param="event")
        texts = [dumps(event) for event in events]
        count = len(texts)

        async def run(conn: AsyncConnection) -> int | None:
            last = (
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(event_seq=jobs.c.event_seq + count)
                    .returning(jobs.c.event_seq)
                )
            ).scalar()
            if last is None:
                return None
            created = now()
            rows = [
                {
                    "job_id": job_id,
                    "seq": last - count + 1 + i,
                    "event": text,
                    "created_at": created,
                }
                for i, text in enumerate(texts)
            ]
            await conn.execute(insert(job_events), rows)
            return int(last)

        last = await self._db.run_write(run)
        if last is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        return list(range(last - count + 1, last + 1))

    async def events(self, job_id: str, after_seq: int = 0) -> list[Record]:
        query = (
            select(job_events.c.seq, job_events.c.event)
            .where(job_events.c.job_id == job_id, job_events.c.seq > after_seq)
            .order_by(job_events.c.seq)
        )
        rows = await self._db.all(query)
        return [{**loads(row.event), "seq": row.seq} for row in rows]

    async def heartbeat(self, owner: str) -> int:
        """Mark the owner's unfinished jobs as alive now; returns how many."""

        async def run(conn: AsyncConnection) -> int:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.owner == owner, jobs.c.status.in_(_UNFINISHED))
                .values(heartbeat_at=now())
            )
            return result.rowcount

        return await self._db.run_write(run)

    async def fail_orphaned(
        self,
        reason: str,
        *,
        is_alive: Callable[[str], bool],
        stale_after: float,
        keep: Collection[str] = (),
    ) -> int:
        """Fail unfinished jobs nobody runs any more; returns how many.

        Orphaned: no owner; an owner on this host for which `is_alive` is False; or a
        heartbeat older than `stale_after` seconds (any host). Owners in `keep` are spared.
        """
        query = select(jobs.c.owner).where(jobs.c.status.in_(_UNFINISHED)).distinct()
        owners = [row.owner for row in await self._db.all(query) if row.owner is not None]
        host = socket.gethostname()
        dead = [
            owner
            for owner in owners
            if owner not in keep and owner.rsplit(":", 2)[0] == host and not is_alive(owner)
        ]
        cutoff = now() - timedelta(seconds=stale_after)
        orphaned = or_(
            jobs.c.owner.is_(None),
            jobs.c.owner.in_(dead) if dead else false(),
            jobs.c.heartbeat_at < cutoff,
        )
        if keep:  # (NOT IN is never true for NULL, hence the explicit case)
            orphaned = orphaned & or_(jobs.c.owner.is_(None), jobs.c.owner.notin_(list(keep)))
        return await self._fail(reason, orphaned)

    async def fail_unfinished(self, reason: str) -> int:
        """Fail every queued/running job, whoever runs it (single-process tools only)."""
        return await self._fail(reason, None)

    async def _fail(self, reason: str, condition: ColumnElement[bool] | None) -> int:
        async def run(conn: AsyncConnection) -> int:
            stamp = now()
            query = update(jobs).where(jobs.c.status.in_(_UNFINISHED))
            if condition is not None:
                query = query.where(condition)
            result = await conn.execute(
                query.values(status="failed", error=reason, finished_at=stamp, updated_at=stamp)
            )
            return result.rowcount

        return await self._db.run_write(run)
