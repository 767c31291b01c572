"""Threads and messages REST (docs/protocol.md §7): `/api/threads`, `/api/messages`.

Every row is scoped to the authenticated user; another user's thread or message is a 404,
exactly like a missing one. Validation errors are 400s in the OpenAI envelope.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from nodetool.api.deps import StoreDep, UserDep
from nodetool.errors import NotFoundError
from nodetool.storage.ids import MAX_ID_LENGTH
from nodetool.storage.threads import MAX_TITLE

router = APIRouter(tags=["threads"])

CursorQuery = Query(None, max_length=1000, description="`next` of the previous page")


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    title: str | None = Field(None, max_length=MAX_TITLE)


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(..., max_length=MAX_TITLE)


class ThreadPublic(BaseModel):
    id: str
    title: str | None
    created_at: str
    updated_at: str


class ThreadList(BaseModel):
    threads: list[ThreadPublic]
    next: str | None


class ThreadDeleted(BaseModel):
    id: str
    object: Literal["thread.deleted"] = "thread.deleted"
    deleted: bool = True


class MessagePublic(BaseModel):
    id: str
    thread_id: str
    role: str
    content: str | list[dict[str, Any]] | None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    model: str | None = None
    provider: str | None = None
    workflow_id: str | None = None
    created_at: str


class MessageList(BaseModel):
    messages: list[MessagePublic]
    next: str | None


def _thread_not_found(thread_id: str) -> NotFoundError:
    return NotFoundError(f"thread {thread_id!r} not found", param="thread_id")


@router.post("/api/threads", response_model=ThreadPublic)
async def create_thread(
    store: StoreDep, user: UserDep, body: ThreadCreate | None = None
) -> dict[str, Any]:
    body = body or ThreadCreate()
    return await store.threads.create(user, id=body.id, title=body.title)


@router.get("/api/threads", response_model=ThreadList)
async def list_threads(
    store: StoreDep,
    user: UserDep,
    cursor: str | None = CursorQuery,
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    threads, next_cursor = await store.threads.list(user, cursor=cursor, limit=limit)
    return {"threads": threads, "next": next_cursor}


@router.get("/api/threads/{thread_id}", response_model=ThreadPublic)
async def get_thread(thread_id: str, store: StoreDep, user: UserDep) -> dict[str, Any]:
    thread = await store.threads.get(user, thread_id)
    if thread is None:
        raise _thread_not_found(thread_id)
    return thread


@router.put("/api/threads/{thread_id}", response_model=ThreadPublic)
async def update_thread(
    thread_id: str, body: ThreadUpdate, store: StoreDep, user: UserDep
) -> dict[str, Any]:
    thread = await store.threads.update(user, thread_id, body.title)
    if thread is None:
        raise _thread_not_found(thread_id)
    return thread


@router.delete("/api/threads/{thread_id}", response_model=ThreadDeleted)
async def delete_thread(thread_id: str, store: StoreDep, user: UserDep) -> ThreadDeleted:
    if not await store.threads.delete(user, thread_id):
        raise _thread_not_found(thread_id)
    return ThreadDeleted(id=thread_id)


@router.get("/api/messages", response_model=MessageList)
async def list_messages(
    store: StoreDep,
    user: UserDep,
    thread_id: str = Query(..., min_length=1, max_length=MAX_ID_LENGTH),
    cursor: str | None = CursorQuery,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    if await store.threads.get(user, thread_id) is None:
        raise _thread_not_found(thread_id)
    messages, next_cursor = await store.messages.list(user, thread_id, cursor=cursor, limit=limit)
    return {"messages": messages, "next": next_cursor}


@router.get("/api/messages/{message_id}", response_model=MessagePublic)
async def get_message(message_id: str, store: StoreDep, user: UserDep) -> dict[str, Any]:
    message = await store.messages.get(user, message_id)
    if message is None:
        raise NotFoundError(f"message {message_id!r} not found", param="message_id")
    return message
