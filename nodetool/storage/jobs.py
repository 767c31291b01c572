"""SQL JobStore: workflow jobs and their ordered events (kept for reconnect/replay).

JSON values are encoded before their transaction begins (a value that cannot be encoded
writes nothing) and decoded after it ends, in a thread when large (`job_rows`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import InvalidRequestError, NotFoundError
from nodetool.storage.base import Page, Record
from nodetool.storage.codec import (
    JsonText,
    check_limit,
    check_str,
    decode_cursor,
    dumps_off_loop,
    encode_cursor,
    iso,
    loads_off_loop,
    now,
)
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.job_rows import (
    COLUMNS,
    NO_RESULTS,
    decoded_events,
    encoded_events,
    event_rows,
    one_record,
    records,
)
from nodetool.storage.schema import job_events, jobs
from nodetool.types.jobs import JOB_STATUSES, TERMINAL_JOB_STATUSES, UNFINISHED_JOB_STATUSES


class JobAttempt:
    """A started attempt: the job record (with its new `attempt`), its cancel flag and the
    number of its last stored event (the attempt numbers its events from there)."""

    __slots__ = ("record", "cancel_requested", "last_seq")

    def __init__(self, record: Record, cancel_requested: bool, last_seq: int) -> None:
        self.record = record
        self.cancel_requested = cancel_requested
        self.last_seq = last_seq


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
        max_attempts: int = 2,
        first_event: Callable[[Record], Record] | None = None,
    ) -> Record:
        if not isinstance(params, dict):
            raise InvalidRequestError("params must be an object", param="params")
        if graph is not None and not isinstance(graph, dict):
            raise InvalidRequestError("graph must be an object", param="graph")
        if not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
            raise InvalidRequestError("max_attempts must be 1..100", param="max_attempts")
        stamp = now()
        values = {
            "id": new_id(),
            "user_id": user_id,
            "workflow_id": check_str(workflow_id, "workflow_id", 128),
            "thread_id": check_str(thread_id, "thread_id", 128),
            "status": "queued",
            "params": await dumps_off_loop(params),
            "graph": None if graph is None else await dumps_off_loop(graph),
            "created_at": stamp,
            "updated_at": stamp,
            "max_attempts": max_attempts,
        }

        record = {key: values[key] for key in ("id", "user_id", "workflow_id", "thread_id")}
        first = [{**first_event(record), "seq": 1}] if first_event is not None else []
        first_rows = event_rows(values["id"], first, stamp)

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(insert(jobs).values({**values, "event_seq": len(first_rows)}))
            if first_rows:
                await conn.execute(insert(job_events), first_rows)

        await self._db.run_write(run)
        record.update(
            status="queued",
            params=await loads_off_loop(values["params"]),
            graph=await loads_off_loop(values["graph"]),
            results=None,
            error=None,
            created_at=iso(stamp),
            updated_at=iso(stamp),
            started_at=None,
            finished_at=None,
            attempt=0,
            max_attempts=max_attempts,
        )
        return record

    async def update(
        self,
        job_id: str,
        *,
        status: str | None = None,
        results: Any = None,
        error: str | None = None,
        attempt: int | None = None,
    ) -> Record:
        stamp = now()
        values: dict[str, Any] = {"updated_at": stamp}
        if status is not None:
            if status not in JOB_STATUSES:
                raise InvalidRequestError(
                    f"status must be one of {', '.join(JOB_STATUSES)}", param="status"
                )
            values["status"] = status
        if results is not None:  # encoded before the transaction: a failure writes nothing
            values["results"] = await dumps_off_loop(results)
        if error is not None:
            values["error"] = str(error)

        async def run(conn: AsyncConnection) -> Any:
            query = select(jobs.c.started_at, jobs.c.finished_at).where(jobs.c.id == job_id)
            current = (await conn.execute(query)).first()
            if current is None:
                return None
            if status == "running" and current.started_at is None:
                values["started_at"] = stamp
            if status in TERMINAL_JOB_STATUSES and current.finished_at is None:
                values["finished_at"] = stamp
            # A finished job is final (e.g. cancelled from another process): the guard sits in
            # the UPDATE itself so a concurrent finish cannot slip between check and write.
            unfinished = jobs.c.status.notin_(TERMINAL_JOB_STATUSES)
            # A superseded attempt (its job was claimed by another worker) changes nothing.
            current_attempt = jobs.c.attempt == attempt if attempt is not None else unfinished
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, unfinished, current_attempt)
                .values(values)
                .returning(*(NO_RESULTS if known else COLUMNS))
            )
            row = result.first()
            if row is not None:
                return row, known
            return (await conn.execute(select(*COLUMNS).where(jobs.c.id == job_id))).one(), False

        # results given encoded with their value are not read back and decoded again
        known = isinstance(results, JsonText) and results.value is not None
        found = await self._db.run_write(run)
        if found is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        row, written = found
        record = await one_record(row)
        if written:
            record["results"] = results.value
        return record

    async def get(self, user_id: str, job_id: str) -> Record | None:
        row = await self._db.first(
            select(*COLUMNS).where(jobs.c.id == job_id, jobs.c.user_id == user_id)
        )
        return None if row is None else await one_record(row)

    async def add_event(self, job_id: str, event: Record) -> int:
        if not isinstance(event, dict):
            raise InvalidRequestError("event must be an object", param="event")
        text = await dumps_off_loop(event)

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
        texts = await encoded_events(events)
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

    async def put_events(self, job_id: str, events: list[Record]) -> None:
        """Store events numbered by their writer (`seq` in each); a number already taken
        is kept as it was (a superseded writer cannot overwrite)."""
        if not events:
            return
        # a batch may carry megabytes of output values: encoded off the event loop
        rows = await asyncio.to_thread(event_rows, job_id, events, now())
        last = max(row["seq"] for row in rows)
        if self._db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(dialect_insert(job_events).on_conflict_do_nothing(), rows)
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.event_seq < last)
                .values(event_seq=last)
            )

        await self._db.run_write(run)

    async def events(self, job_id: str, after_seq: int = 0) -> list[Record]:
        query = (
            select(job_events.c.seq, job_events.c.event)
            .where(job_events.c.job_id == job_id, job_events.c.seq > after_seq)
            .order_by(job_events.c.seq)
        )
        rows = await self._db.all(query)
        return await decoded_events(rows)

    async def list(
        self,
        user_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        limit = check_limit(limit)
        query = select(*COLUMNS).where(jobs.c.user_id == user_id)
        if status is not None:
            statuses = status.split(",") if isinstance(status, str) else []
            if not statuses or any(s not in JOB_STATUSES for s in statuses):
                raise InvalidRequestError(
                    f"status must be one or more (comma separated) of {', '.join(JOB_STATUSES)}",
                    param="status",
                )
            query = query.where(jobs.c.status.in_(statuses))
        if workflow_id is not None:
            query = query.where(jobs.c.workflow_id == check_str(workflow_id, "workflow_id", 128))
        if cursor is not None:
            (last_id,) = decode_cursor(cursor, 1)
            query = query.where(jobs.c.id < last_id)
        rows = await self._db.all(query.order_by(jobs.c.id.desc()).limit(limit + 1))
        page = await records(rows[:limit])
        following = encode_cursor(page[-1]["id"]) if len(rows) > limit else None
        return page, following

    async def begin_attempt(self, job_id: str, owner: str) -> JobAttempt | None:
        """Start the next attempt of an unfinished job on `owner`; None if it is finished."""
        stamp = now()

        async def run(conn: AsyncConnection) -> Any:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(UNFINISHED_JOB_STATUSES))
                .values(attempt=jobs.c.attempt + 1, owner=owner, status="running", updated_at=stamp)
                .returning(*COLUMNS, jobs.c.cancel_requested, jobs.c.event_seq)
            )
            row = result.first()
            if row is not None and row.started_at is None:
                await conn.execute(update(jobs).where(jobs.c.id == job_id).values(started_at=stamp))
            return row

        row = await self._db.run_write(run)
        if row is None:
            return None
        record = await one_record(row)
        if record["started_at"] is None:
            record["started_at"] = iso(stamp)
        return JobAttempt(record, bool(row.cancel_requested), row.event_seq)

    async def request_cancel(self, job_id: str) -> str:
        """`cancelled` (it was queued: now final), `requested` (running: flagged) or `finished`."""
        stamp = now()

        async def run(conn: AsyncConnection) -> str:
            queued = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(
                    status="cancelled",
                    error="cancelled",
                    cancel_requested=1,
                    finished_at=stamp,
                    updated_at=stamp,
                )
            )
            if queued.rowcount:
                return "cancelled"
            running = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == "running")
                .values(cancel_requested=1, updated_at=stamp)
            )
            return "requested" if running.rowcount else "finished"

        return await self._db.run_write(run)

    async def cancels_for(self, owner: str) -> list[str]:
        """Running jobs of `owner` with a cancel requested."""
        query = select(jobs.c.id).where(
            jobs.c.owner == owner, jobs.c.status == "running", jobs.c.cancel_requested == 1
        )
        return [row.id for row in await self._db.all(query)]

    async def fail_unfinished(self, reason: str) -> int:
        """Fail every queued/running job, whoever runs it (single-process tools only)."""
        return await self._fail(reason, None)

    async def _fail(self, reason: str, condition: ColumnElement[bool] | None) -> int:
        async def run(conn: AsyncConnection) -> int:
            stamp = now()
            query = update(jobs).where(jobs.c.status.in_(UNFINISHED_JOB_STATUSES))
            if condition is not None:
                query = query.where(condition)
            result = await conn.execute(
                query.values(status="failed", error=reason, finished_at=stamp, updated_at=stamp)
            )
            return result.rowcount

        return await self._db.run_write(run)
