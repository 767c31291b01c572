"""SQL MessageStore: messages of a thread in time order (ids are time-ordered)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import InvalidRequestError, NotFoundError
from nodetool.storage.base import ROLES, Page, Record
from nodetool.storage.codec import (
    check_limit,
    check_str,
    decode_cursor,
    dumps,
    dumps_or_none,
    encode_cursor,
    iso,
    loads,
    now,
)
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.schema import messages, threads

_COLUMNS = tuple(column for column in messages.c if column.name != "user_id")
_OPTIONAL_STRINGS = (
    ("tool_call_id", 256),
    ("name", 256),
    ("model", 256),
    ("provider", 64),
    ("workflow_id", 128),
)


def _record(row: Any) -> Record:
    return {
        "id": row.id,
        "thread_id": row.thread_id,
        "role": row.role,
        "content": loads(row.content),
        "tool_calls": loads(row.tool_calls),
        "tool_call_id": row.tool_call_id,
        "name": row.name,
        "model": row.model,
        "provider": row.provider,
        "workflow_id": row.workflow_id,
        "created_at": iso(row.created_at),
    }


def _values(message: Record) -> dict[str, Any]:
    """Checked column values of a message dict (unknown keys are ignored)."""
    if hasattr(message, "model_dump"):  # a nodetool.types Message is accepted too
        message = message.model_dump(mode="json")
    if not isinstance(message, dict):
        raise InvalidRequestError("message must be an object", param="message")
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise InvalidRequestError(
            "content must be a string, a list of content parts or null", param="content"
        )
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list | tuple):
        raise InvalidRequestError("tool_calls must be a list", param="tool_calls")
    values: dict[str, Any] = {
        "role": role,
        "content": dumps_or_none(content),
        "tool_calls": dumps(tool_calls) if tool_calls else None,
    }
    for key, max_length in _OPTIONAL_STRINGS:
        values[key] = check_str(message.get(key), key, max_length)
    return values


class SqlMessageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, user_id: str, thread_id: str, message: Record) -> Record:
        values = _values(message)
        values.update(id=new_id(), thread_id=thread_id, user_id=user_id, created_at=now())

        async def run(conn: AsyncConnection) -> bool:
            touched = await conn.execute(
                update(threads)
                .where(threads.c.id == thread_id, threads.c.user_id == user_id)
                .values(updated_at=values["created_at"])
            )
            if touched.rowcount != 1:
                return False
            await conn.execute(insert(messages).values(values))
            return True

        if not await self._db.run_write(run):
            raise NotFoundError(f"thread {thread_id!r} not found", param="thread_id")
        return {
            "id": values["id"],
            "thread_id": thread_id,
            "role": values["role"],
            "content": loads(values["content"]),
            "tool_calls": loads(values["tool_calls"]),
            **{key: values[key] for key, _ in _OPTIONAL_STRINGS},
            "created_at": iso(values["created_at"]),
        }

    async def list(
        self, user_id: str, thread_id: str, cursor: str | None = None, limit: int = 100
    ) -> Page:
        check_limit(limit)
        query = select(*_COLUMNS).where(
            messages.c.thread_id == thread_id, messages.c.user_id == user_id
        )
        if cursor is not None:
            (after_id,) = decode_cursor(cursor, 1)
            query = query.where(messages.c.id > after_id)
        query = query.order_by(messages.c.id).limit(limit + 1)
        rows = await self._db.all(query)
        records = [_record(row) for row in rows[:limit]]
        next_cursor = encode_cursor(records[-1]["id"]) if len(rows) > limit else None
        return records, next_cursor

    async def recent(self, user_id: str, thread_id: str, limit: int) -> list[Record]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidRequestError("limit must be a non-negative integer", param="limit")
        if limit == 0:
            return []
        query = (
            select(*_COLUMNS)
            .where(messages.c.thread_id == thread_id, messages.c.user_id == user_id)
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
        rows = await self._db.all(query)
        return [_record(row) for row in reversed(rows)]

    async def get(self, user_id: str, id: str) -> Record | None:
        row = await self._db.first(
            select(*_COLUMNS).where(messages.c.id == id, messages.c.user_id == user_id)
        )
        return None if row is None else _record(row)
