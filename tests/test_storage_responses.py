"""The stored-responses contract, for SQLite, PostgreSQL and the in-memory store alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from nodetool.storage import open_store
from nodetool.storage.memory_responses import MemoryResponseStore
from tests.support.storage import BACKENDS, backend_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module", params=[*BACKENDS, "memory"])
async def responses(request, tmp_path_factory) -> AsyncIterator:
    if request.param == "memory":
        yield MemoryResponseStore(capacity=3)
        return
    async with backend_settings(request.param, tmp_path_factory.mktemp("resp")) as settings:
        store = await open_store(settings)
        yield store.responses
        await store.close()


def response(previous: str | None = None, status: str = "completed") -> dict:
    rid = f"resp_{uuid.uuid4().hex}"
    return {"id": rid, "object": "response", "status": status, "previous_response_id": previous}


async def test_save_get_replace_delete_per_user(responses) -> None:
    first = response()
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": []}]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    await responses.save("alice", first, items, history)
    record = await responses.get("alice", first["id"])
    assert record["response"] == first and record["input_items"] == items
    assert record["history"] == history and record["created_at"].endswith("Z")
    assert await responses.get("bob", first["id"]) is None
    assert await responses.delete("bob", first["id"]) is False
    updated = {**first, "status": "failed"}
    await responses.save("alice", updated, items, history)
    assert (await responses.get("alice", first["id"]))["response"]["status"] == "failed"
    follow = response(previous=first["id"])
    await responses.save("alice", follow, [], history)
    assert (await responses.get("alice", follow["id"]))["previous_response_id"] == first["id"]
    assert await responses.delete("alice", first["id"]) is True
    assert await responses.get("alice", first["id"]) is None
    assert await responses.delete("alice", first["id"]) is False


async def test_memory_store_keeps_the_newest() -> None:
    store = MemoryResponseStore(capacity=2)
    made = [response() for _ in range(3)]
    for item in made:
        await store.save("u", item, [], [])
    assert await store.get("u", made[0]["id"]) is None
    assert await store.get("u", made[2]["id"]) is not None
