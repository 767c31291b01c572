"""The stored-responses contract, for SQLite and PostgreSQL: the full store's `responses` and
the responses-only store chat-server opens on the same database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import IntegrityError

from nodetool.storage import open_response_store, open_store
from tests.support.storage import BACKENDS, backend_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module", params=BACKENDS)
async def responses(request, tmp_path_factory) -> AsyncIterator:
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


@pytest.mark.parametrize("backend", BACKENDS)
async def test_responses_only_store_shares_the_database(backend: str, tmp_path) -> None:
    """chat-server's own responses store reads and writes the same table as the full store."""
    async with backend_settings(backend, tmp_path) as settings:
        alone = await open_response_store(settings)
        full = await open_store(settings)
        try:
            first, second = response(), response()
            await alone.save("u", first, [], [{"role": "user", "content": "a"}])
            await full.responses.save("u", second, [], [])
            record = await full.responses.get("u", first["id"])
            assert record is not None and record["history"] == [{"role": "user", "content": "a"}]
            assert (await alone.get("u", second["id"]))["response"] == second
            assert await alone.delete("u", second["id"]) is True
            assert await full.responses.get("u", second["id"]) is None
        finally:
            await alone.close()
            await full.close()


async def test_concurrent_saves_share_commits_and_all_land(responses) -> None:
    db = responses._db
    transactions = 0
    run_driver_write = db.run_driver_write

    async def counted(fn):
        nonlocal transactions
        transactions += 1
        return await run_driver_write(fn)

    db.run_driver_write = counted
    try:
        saved = [response() for _ in range(40)]
        await asyncio.gather(*(responses.save("carol", r, [], []) for r in saved))
    finally:
        del db.run_driver_write
    for r in saved:
        assert (await responses.get("carol", r["id"]))["response"] == r
    assert transactions < len(saved)  # one commit served several saves


async def test_a_failing_save_does_not_fail_the_ones_sharing_its_commit(responses) -> None:
    good = [response() for _ in range(6)]
    bad = {"object": "response", "id": None}  # the key cannot be NULL
    results = await asyncio.gather(
        *(responses.save("dave", r, [], []) for r in good[:3]),
        responses.save("dave", bad, [], []),
        *(responses.save("dave", r, [], []) for r in good[3:]),
        return_exceptions=True,
    )
    assert isinstance(results[3], IntegrityError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 6
    for r in good:
        assert await responses.get("dave", r["id"]) is not None


async def test_a_save_whose_caller_is_cancelled_still_lands(responses) -> None:
    kept = response()
    task = asyncio.create_task(responses.save("erin", kept, [], []))
    await asyncio.sleep(0)  # under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if await responses.get("erin", kept["id"]) is not None:
            break
        await asyncio.sleep(0.01)
    assert await responses.get("erin", kept["id"]) is not None
