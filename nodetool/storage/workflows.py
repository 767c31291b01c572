"""SQL WorkflowStore: NodeTool workflow JSON per user, plus shared (user_id None) workflows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import ConflictError, InvalidRequestError, PermissionDeniedError
from nodetool.storage.base import Record
from nodetool.storage.codec import check_id, dumps, iso, loads, now
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.schema import workflows

_COLUMNS = (
    workflows.c.id,
    workflows.c.user_id,
    workflows.c.data,
    workflows.c.created_at,
    workflows.c.updated_at,
)


def _record(row: Any) -> Record:
    data = loads(row.data)
    data.update(
        id=row.id,
        user_id=row.user_id,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )
    return data


def _visible(user_id: str) -> Any:
    return or_(workflows.c.user_id == user_id, workflows.c.user_id.is_(None))


class SqlWorkflowStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, user_id: str | None, workflow: Record) -> Record:
        if not isinstance(workflow, dict):
            raise InvalidRequestError("workflow must be a JSON object", param="workflow")
        workflow_id = workflow.get("id") or new_id()
        check_id(workflow_id)
        data = {
            k: v for k, v in workflow.items() if k not in ("user_id", "created_at", "updated_at")
        }
        data["id"] = workflow_id
        name, description = data.get("name"), data.get("description")
        values = {
            "name": name if isinstance(name, str) else "",
            "description": description if isinstance(description, str) else "",
            "data": dumps(data),
        }

        async def run(conn: AsyncConnection) -> Any:
            stamp = now()
            found = (
                await conn.execute(select(workflows.c.user_id).where(workflows.c.id == workflow_id))
            ).first()
            if found is None:
                await conn.execute(
                    insert(workflows).values(
                        id=workflow_id,
                        user_id=user_id,
                        created_at=stamp,
                        updated_at=stamp,
                        **values,
                    )
                )
            elif found.user_id == user_id:
                await conn.execute(
                    update(workflows)
                    .where(workflows.c.id == workflow_id)
                    .values(updated_at=stamp, **values)
                )
            elif found.user_id is None:
                raise PermissionDeniedError(
                    f"workflow {workflow_id!r} is shared and read-only", param="id"
                )
            else:
                raise ConflictError(f"workflow id {workflow_id!r} is not available", param="id")
            return (
                await conn.execute(select(*_COLUMNS).where(workflows.c.id == workflow_id))
            ).one()

        for attempt in range(2):
            try:
                return _record(await self._db.run_write(run))
            except IntegrityError:  # inserted concurrently by another writer: decide again
                if attempt:
                    raise ConflictError(
                        f"workflow id {workflow_id!r} is not available", param="id"
                    ) from None
        raise AssertionError("unreachable")

    async def get(self, user_id: str, id: str) -> Record | None:
        row = await self._db.first(select(*_COLUMNS).where(workflows.c.id == id, _visible(user_id)))
        return None if row is None else _record(row)

    async def list(self, user_id: str) -> list[Record]:
        query = (
            select(*_COLUMNS).where(_visible(user_id)).order_by(workflows.c.name, workflows.c.id)
        )
        rows = await self._db.all(query)
        return [_record(row) for row in rows]

    async def delete(self, user_id: str, id: str) -> bool:
        async def run(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                sql_delete(workflows).where(workflows.c.id == id, workflows.c.user_id == user_id)
            )
            return result.rowcount == 1

        return await self._db.run_write(run)
