"""SQL ThreadStore: chat threads owned by one user; a thread id is unique per user only, so
another user holding the same id is never visible (not even as a conflict)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import ConflictError
from nodetool.storage.base import Page, Record
from nodetool.storage.codec import (
    check_id,
    check_limit,
    check_str,
    decode_cursor,
    encode_cursor,
    iso,
    now,
    parse_time,
)
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.schema import messages, threads

MAX_TITLE = 1000
_COLUMNS = (threads.c.id, threads.c.title, threads.c.created_at, threads.c.updated_at)


def _record(row: Any) -> Record:
    return {
        "id": row.id,
        "title": row.title,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


class SqlThreadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user_id: str, id: str | None = None, title: str | None = None) -> Record:
        thread_id = new_id() if id is None else check_id(id)
        title = check_str(title, "title", MAX_TITLE)
        stamp = now()

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(threads).values(
                    id=thread_id, user_id=user_id, title=title, created_at=stamp, updated_at=stamp
                )
            )

        try:
            await self._db.run_write(run)
        except IntegrityError:  # only this user's own thread can hold the id
            raise ConflictError(
                f"thread {thread_id!r} already exists", param="id", code="thread_exists"
            ) from None
        return {
            "id": thread_id,
            "title": title,
            "created_at": iso(stamp),
            "updated_at": iso(stamp),
        }

    async def ensure(self, user_id: str, id: str | None, title: str | None = None) -> Record:
        if id is None:
            return await self.create(user_id, None, title)
        check_id(id, "thread_id")
        for _ in range(2):
            record = await self.get(user_id, id)
            if record is not None:
                return record
            try:
                return await self.create(user_id, id, title)
            except ConflictError:
                continue  # created concurrently by this user: read it
        raise ConflictError(f"thread {id!r} is being created", param="thread_id")

    async def get(self, user_id: str, id: str) -> Record | None:
        row = await self._db.first(
            select(*_COLUMNS).where(threads.c.id == id, threads.c.user_id == user_id)
        )
        return None if row is None else _record(row)

    async def list(self, user_id: str, cursor: str | None = None, limit: int = 50) -> Page:
        check_limit(limit)
        query = select(*_COLUMNS).where(threads.c.user_id == user_id)
        if cursor is not None:
            stamp, last_id = decode_cursor(cursor, 2)
            updated = parse_time(stamp)
            query = query.where(
                or_(
                    threads.c.updated_at < updated,
                    and_(threads.c.updated_at == updated, threads.c.id < last_id),
                )
            )
        query = query.order_by(threads.c.updated_at.desc(), threads.c.id.desc()).limit(limit + 1)
        rows = await self._db.all(query)
        records = [_record(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = records[-1]
            next_cursor = encode_cursor(last["updated_at"], last["id"])
        return records, next_cursor

    async def update(self, user_id: str, id: str, title: str | None) -> Record | None:
        title = check_str(title, "title", MAX_TITLE)

        async def run(conn: AsyncConnection) -> Any:
            result = await conn.execute(
                update(threads)
                .where(threads.c.id == id, threads.c.user_id == user_id)
                .values(title=title, updated_at=now())
                .returning(*_COLUMNS)
            )
            return result.first()

        row = await self._db.run_write(run)
        return None if row is None else _record(row)

    async def delete(self, user_id: str, id: str) -> bool:
        async def run(conn: AsyncConnection) -> bool:
            owned = (
                await conn.execute(
                    select(threads.c.id).where(threads.c.id == id, threads.c.user_id == user_id)
                )
            ).first()
            if owned is None:
                return False
            await conn.execute(
                delete(messages).where(messages.c.thread_id == id, messages.c.user_id == user_id)
            )
            await conn.execute(
                delete(threads).where(threads.c.id == id, threads.c.user_id == user_id)
            )
            return True

        return await self._db.run_write(run)

    async def touch(self, user_id: str, id: str) -> None:
        async def run(conn: AsyncConnection) -> None:
            await conn.execute(
                update(threads)
                .where(threads.c.id == id, threads.c.user_id == user_id)
                .values(updated_at=now())
            )

        await self._db.run_write(run)
