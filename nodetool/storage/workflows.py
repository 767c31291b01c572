"""SQL WorkflowStore: NodeTool workflow JSON per user, plus shared (user_id None) workflows.

A workflow id is unique per user only (the key is (user_id, id)): another user holding the
same id is never visible, not even as a conflict. Shared workflows are stored under
`SHARED_OWNER`; their ids are visible to everyone, so a user cannot take one (403).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from nodetool.errors import ConflictError, InvalidRequestError, PermissionDeniedError
from nodetool.storage.base import Record
from nodetool.storage.codec import check_id, dumps, iso, loads, now
from nodetool.storage.db import Database
from nodetool.storage.ids import new_id
from nodetool.storage.schema import SHARED_OWNER, workflows

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
        user_id=None if row.user_id == SHARED_OWNER else row.user_id,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )
    return data


def _visible(user_id: str) -> Any:
    return workflows.c.user_id.in_((user_id, SHARED_OWNER))


def _key(owner: str, workflow_id: str) -> tuple[Any, Any]:
    return workflows.c.user_id == owner, workflows.c.id == workflow_id


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

        owner = SHARED_OWNER if user_id is None else user_id
        if owner == SHARED_OWNER and user_id is not None:
            raise InvalidRequestError("user_id must not be empty", param="user_id")
        # a user may not take a shared id; a shared workflow may not take any user's id
        shared = workflows.c.user_id == SHARED_OWNER
        others = shared if user_id is not None else ~shared

        async def run(conn: AsyncConnection) -> Any:
            stamp = now()
            taken = (
                await conn.execute(
                    select(workflows.c.user_id).where(workflows.c.id == workflow_id, others)
                )
            ).first()
            if taken is not None and user_id is not None:
                raise PermissionDeniedError(
                    f"workflow {workflow_id!r} is shared and read-only", param="id"
                )
            if taken is not None:
                raise ConflictError(f"workflow id {workflow_id!r} is not available", param="id")
            own = _key(owner, workflow_id)
            changed = await conn.execute(
                update(workflows).where(*own).values(updated_at=stamp, **values)
            )
            if not changed.rowcount:
                await conn.execute(
                    insert(workflows).values(
                        id=workflow_id, user_id=owner, created_at=stamp, updated_at=stamp, **values
                    )
                )
            return (await conn.execute(select(*_COLUMNS).where(*own))).one()

        for attempt in range(2):
            try:
                return _record(await self._db.run_write(run))
            except IntegrityError:  # this owner inserted it concurrently: update it instead
                if attempt:
                    raise ConflictError(
                        f"workflow {workflow_id!r} is being saved concurrently", param="id"
                    ) from None
        raise AssertionError("unreachable")

    async def get(self, user_id: str, id: str) -> Record | None:
        query = select(*_COLUMNS).where(workflows.c.id == id, _visible(user_id))
        # the user's own first, should a shared one have the same id
        row = await self._db.first(query.order_by(workflows.c.user_id == SHARED_OWNER))
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
                sql_delete(workflows).where(*_key(user_id, id), workflows.c.user_id != SHARED_OWNER)
            )
            return result.rowcount == 1

        return await self._db.run_write(run)
