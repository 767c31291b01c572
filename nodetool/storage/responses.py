"""Stored `/v1/responses` objects, per user, in the `responses` table.

A record is `{id, previous_response_id, response, input_items, history, created_at}`:
`response` is the object as last sent to the client, `input_items` the request's own input
items (with ids), `history` the whole conversation after the response (chat messages as dicts,
instructions excluded) so `previous_response_id` can continue it. Every call is scoped by
`user_id`: another user's id reads as missing.

`serve` and `worker` use their store's `responses`; `nodetool chat-server`, which keeps no
other state, opens only this store (`open_response_store`) on the same database, so stored
responses survive restarts and are shared by its worker processes.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Dialect, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.config import Settings
from nodetool.storage.base import Record
from nodetool.storage.codec import dumps, iso, loads, now
from nodetool.storage.db import Database
from nodetool.storage.group_commit import GroupCommit
from nodetool.storage.migrations import migrated
from nodetool.storage.schema import responses
from nodetool.storage.sqlite_writer import Execute


class ResponseStore(Protocol):
    async def save(
        self,
        user_id: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> None:
        """Insert or replace the response `response["id"]` of this user."""
        ...

    async def save_encoded(
        self,
        user_id: str,
        response_id: str,
        previous_response_id: str | None,
        response: str,
        input_items: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> None:
        """`save`, given the response as JSON text (stored as it is) and its two keys."""
        ...

    async def get(self, user_id: str, id: str) -> Record | None: ...

    async def delete(self, user_id: str, id: str) -> bool:
        """False when no such response exists for this user."""
        ...


def _record(row: Any) -> Record:
    return {
        "id": row.id,
        "previous_response_id": row.previous_response_id,
        "response": loads(row.response),
        "input_items": loads(row.input_items),
        "history": loads(row.history),
        "created_at": iso(row.created_at),
    }


# built once: composing a statement costs about 0.6 ms of SQLAlchemy work, executing one ~30 µs
_UPDATE = (
    update(responses)
    .where(responses.c.id == bindparam("key_id"), responses.c.user_id == bindparam("key_user_id"))
    .values(
        {
            name: bindparam(name)
            for name in ("previous_response_id", "response", "input_items", "history")
        }
    )
)
_SELECT = select(responses).where(
    responses.c.id == bindparam("key_id"), responses.c.user_id == bindparam("key_user_id")
)
_INSERT = insert(responses).values(
    id=bindparam("key_id"),
    user_id=bindparam("key_user_id"),
    created_at=bindparam("created_at"),
    previous_response_id=bindparam("previous_response_id"),
    response=bindparam("response"),
    input_items=bindparam("input_items"),
    history=bindparam("history"),
)


class _DriverSql:
    """`_UPDATE` and `_INSERT` compiled once for a dialect and run as driver SQL: SQLAlchemy's
    per-execution statement work costs ~0.1 ms a statement, the driver's ~40 µs."""

    def __init__(self, dialect: Dialect) -> None:
        self.update, self.update_keys = _positional(_UPDATE, dialect)
        self.insert, self.insert_keys = _positional(_INSERT, dialect)
        self.stamp = responses.c.created_at.type.bind_processor(dialect) or (lambda v: v)

    def write(self, execute: Execute, row: dict[str, Any]) -> None:
        """Insert or replace one response row (driver errors still raise SQLAlchemy's)."""
        if execute(self.update, tuple(row[k] for k in self.update_keys)):
            return
        row = {**row, "created_at": self.stamp(now())}
        execute(self.insert, tuple(row[k] for k in self.insert_keys))


def _positional(statement: Any, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The statement's SQL text and its parameters' names in order (positional paramstyles:
    SQLite's qmark, asyncpg's numeric_dollar)."""
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        raise RuntimeError(f"{dialect.name}: expected a positional paramstyle")
    return compiled.string, tuple(compiled.positiontup)


class SqlResponseStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql: _DriverSql | None = None  # compiled for the database's dialect on first save
        self._saves: GroupCommit[dict[str, Any]] = GroupCommit(db, self._write_rows)

    def _write_rows(self, execute: Execute, rows: list[dict[str, Any]]) -> None:
        """Insert or replace each response row (one transaction, one hop on SQLite)."""
        if self._sql is None:
            self._sql = _DriverSql(self._db.write_dialect)
        for row in rows:
            self._sql.write(execute, row)

    @classmethod
    async def open(cls, settings: Settings) -> SqlResponseStore:
        """A store on its own connection to the settings' database, migrated (the caller
        closes it); for servers that keep no other state."""
        return cls(await migrated(Database.from_settings(settings)))

    async def close(self) -> None:
        """Dispose of the database connections (only for a store made by `open`)."""
        await self._db.dispose()

    async def save(
        self,
        user_id: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> None:
        previous = response.get("previous_response_id")
        await self.save_encoded(
            user_id, response["id"], previous, dumps(response), input_items, history
        )

    async def save_encoded(
        self,
        user_id: str,
        response_id: str,
        previous_response_id: str | None,
        response: str,
        input_items: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> None:
        row = {
            "key_id": response_id,
            "key_user_id": user_id,
            "previous_response_id": previous_response_id,
            "response": response,
            "input_items": dumps(input_items),
            "history": dumps(history),
        }
        await self._saves.submit(row)  # concurrent saves share a commit

    async def get(self, user_id: str, id: str) -> Record | None:
        row = await self._db.first(_SELECT, {"key_id": id, "key_user_id": user_id})
        return None if row is None else _record(row)

    async def delete(self, user_id: str, id: str) -> bool:
        async def run(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                delete(responses).where(responses.c.id == id, responses.c.user_id == user_id)
            )
            return result.rowcount == 1

        return await self._db.run_write(run)
