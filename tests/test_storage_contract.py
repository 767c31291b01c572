"""The store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from nodetool.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from nodetool.storage import Store, open_store
from nodetool.storage.codec import JsonText, dumps
from tests.support.storage import BACKENDS, backend_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module", params=BACKENDS)
async def settings(request, tmp_path_factory) -> AsyncIterator:
    async with backend_settings(request.param, tmp_path_factory.mktemp("store")) as value:
        yield value


@pytest.fixture(scope="module")
async def store(settings) -> AsyncIterator[Store]:
    opened = await open_store(settings)
    yield opened
    await opened.close()


@pytest.fixture()
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def other() -> str:
    return f"other-{uuid.uuid4().hex[:8]}"


def _is_utc_iso(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value).utcoffset().total_seconds() == 0


# --- threads -------------------------------------------------------------------------------


async def test_thread_create_get_with_and_without_id(store: Store, user: str) -> None:
    made = await store.threads.create(user, title="First")
    assert set(made) == {"id", "title", "created_at", "updated_at"}
    assert made["title"] == "First" and _is_utc_iso(made["created_at"])
    assert await store.threads.get(user, made["id"]) == made

    chosen = f"t-{uuid.uuid4().hex}"
    named = await store.threads.create(user, id=chosen)
    assert named["id"] == chosen and named["title"] is None


async def test_thread_ids_are_per_user_so_another_users_id_is_free(
    store: Store, user: str, other: str
) -> None:
    chosen = f"t-{uuid.uuid4().hex}"
    mine = await store.threads.create(user, id=chosen, title="mine")
    with pytest.raises(ConflictError) as own:
        await store.threads.create(user, id=chosen)
    assert own.value.param == "id"
    theirs = await store.threads.create(other, id=chosen, title="theirs")  # not a conflict
    assert theirs["id"] == chosen and theirs["title"] == "theirs"
    assert (await store.threads.get(user, chosen))["title"] == "mine"
    assert (await store.threads.get(other, chosen))["title"] == "theirs"
    await store.messages.add(user, chosen, {"role": "user", "content": "user's secret"})
    await store.messages.add(other, chosen, {"role": "user", "content": "other's words"})
    assert [m["content"] for m in (await store.messages.list(other, chosen))[0]] == [
        "other's words"
    ]
    assert [m["content"] for m in await store.messages.recent(user, chosen, 10)] == [
        "user's secret"
    ]
    # renaming, deleting and listing touch only the caller's thread of that id
    assert (await store.threads.update(other, chosen, "renamed"))["title"] == "renamed"
    assert (await store.threads.get(user, chosen))["title"] == "mine"
    assert await store.threads.delete(other, chosen) is True
    assert await store.threads.get(other, chosen) is None
    kept = await store.threads.get(user, chosen)
    assert (kept["title"], kept["created_at"]) == ("mine", mine["created_at"])
    assert [m["content"] for m in (await store.messages.list(user, chosen))[0]] == ["user's secret"]
    assert [t["id"] for t in (await store.threads.list(other))[0]] == []


@pytest.mark.parametrize("bad", ["", " padded", "x" * 129, "tab\there", 42])
async def test_thread_rejects_invalid_ids(store: Store, user: str, bad) -> None:
    with pytest.raises(InvalidRequestError) as err:
        await store.threads.create(user, id=bad)
    assert err.value.param == "id"


async def test_thread_ensure_gets_or_creates_only_the_callers_own(
    store: Store, user: str, other: str
) -> None:
    fresh = await store.threads.ensure(user, None, title="auto")
    assert fresh["title"] == "auto"
    chosen = f"t-{uuid.uuid4().hex}"
    created = await store.threads.ensure(user, chosen)
    assert created["id"] == chosen
    assert await store.threads.ensure(user, chosen, title="ignored") == created
    theirs = await store.threads.ensure(other, chosen, title="other's")
    assert theirs["id"] == chosen and theirs["title"] == "other's"
    assert await store.threads.get(user, chosen) == created


async def test_thread_ensure_races_create_one_thread(store: Store, user: str) -> None:
    chosen = f"t-{uuid.uuid4().hex}"
    results = await asyncio.gather(*(store.threads.ensure(user, chosen) for _ in range(10)))
    assert {r["id"] for r in results} == {chosen}
    assert len({r["created_at"] for r in results}) == 1


async def test_thread_list_newest_updated_first_with_cursor(store: Store, user: str) -> None:
    made = [await store.threads.create(user, title=f"t{i}") for i in range(7)]
    await store.threads.touch(user, made[2]["id"])
    expected = [made[2]["id"]] + [t["id"] for t in reversed(made) if t is not made[2]]

    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = await store.threads.list(user, cursor=cursor, limit=3)
        seen += [t["id"] for t in page]
        pages += 1
        if cursor is None:
            break
    assert seen == expected and pages == 3


async def test_thread_list_rejects_bad_cursor_and_limit(store: Store, user: str) -> None:
    for cursor in ("not-a-cursor", "W10", "eyJhIjoxfQ"):
        with pytest.raises(InvalidRequestError) as err:
            await store.threads.list(user, cursor=cursor)
        assert err.value.param == "cursor"
    for limit in (0, -1, 100_000):
        with pytest.raises(InvalidRequestError) as err:
            await store.threads.list(user, limit=limit)
        assert err.value.param == "limit"


async def test_thread_update_and_delete_are_owner_only(store: Store, user: str, other: str) -> None:
    made = await store.threads.create(user, title="old")
    await store.messages.add(user, made["id"], {"role": "user", "content": "hello"})
    assert await store.threads.update(other, made["id"], "stolen") is None
    renamed = await store.threads.update(user, made["id"], "new")
    assert renamed["title"] == "new" and renamed["updated_at"] >= made["updated_at"]

    assert await store.threads.delete(other, made["id"]) is False
    assert (await store.threads.get(user, made["id"]))["title"] == "new"
    assert await store.threads.delete(user, made["id"]) is True
    assert await store.threads.get(user, made["id"]) is None
    assert await store.messages.list(user, made["id"]) == ([], None)
    assert await store.threads.delete(user, made["id"]) is False


async def test_thread_lists_are_per_user(store: Store, user: str, other: str) -> None:
    mine = await store.threads.create(user)
    theirs = await store.threads.create(other)
    assert [t["id"] for t in (await store.threads.list(user))[0]] == [mine["id"]]
    assert [t["id"] for t in (await store.threads.list(other))[0]] == [theirs["id"]]


# --- messages ------------------------------------------------------------------------------


async def test_message_fields_round_trip_exactly(store: Store, user: str) -> None:
    thread = await store.threads.create(user)
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    sent = [
        {"role": "user", "content": "plain text stays a string"},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": None, "tool_calls": calls, "model": "m", "provider": "p"},
        {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1", "name": "f"},
        {"role": "assistant", "content": "", "workflow_id": "wf-1"},
    ]
    added = [await store.messages.add(user, thread["id"], m) for m in sent]
    listed, cursor = await store.messages.list(user, thread["id"])
    assert cursor is None and listed == added
    for record, message in zip(listed, sent, strict=True):
        assert record["thread_id"] == thread["id"] and _is_utc_iso(record["created_at"])
        for key, value in message.items():
            assert record[key] == value and type(record[key]) is type(value)
        assert await store.messages.get(user, record["id"]) == record


async def test_message_add_touches_its_thread(store: Store, user: str) -> None:
    first = await store.threads.create(user)
    second = await store.threads.create(user)
    await store.messages.add(user, first["id"], {"role": "user", "content": "bump"})
    page, _ = await store.threads.list(user)
    assert [t["id"] for t in page] == [first["id"], second["id"]]


async def test_message_add_needs_an_own_thread(store: Store, user: str, other: str) -> None:
    thread = await store.threads.create(user)
    with pytest.raises(NotFoundError):
        await store.messages.add(other, thread["id"], {"role": "user", "content": "x"})
    with pytest.raises(NotFoundError):
        await store.messages.add(user, "no-such-thread", {"role": "user", "content": "x"})


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "robot", "content": "x"}, "role"),
        ({"content": "x"}, "role"),
        ({"role": "user", "content": {"a": 1}}, "content"),
        ({"role": "assistant", "tool_calls": "nope"}, "tool_calls"),
        ({"role": "user", "content": "x", "model": 5}, "model"),
    ],
)
async def test_message_add_rejects_bad_messages(store: Store, user: str, message, param) -> None:
    thread = await store.threads.create(user)
    with pytest.raises(InvalidRequestError) as err:
        await store.messages.add(user, thread["id"], message)
    assert err.value.param == param


async def test_messages_are_invisible_to_other_users(store: Store, user: str, other: str) -> None:
    thread = await store.threads.create(user)
    message = await store.messages.add(user, thread["id"], {"role": "user", "content": "secret"})
    assert await store.messages.get(other, message["id"]) is None
    assert await store.messages.list(other, thread["id"]) == ([], None)
    assert await store.messages.recent(other, thread["id"], 10) == []


async def test_message_list_pages_oldest_first(store: Store, user: str) -> None:
    thread = await store.threads.create(user)
    ids = [
        (await store.messages.add(user, thread["id"], {"role": "user", "content": str(i)}))["id"]
        for i in range(12)
    ]
    assert ids == sorted(ids)
    seen, cursor = [], None
    while True:
        page, cursor = await store.messages.list(user, thread["id"], cursor=cursor, limit=5)
        seen += [m["id"] for m in page]
        if cursor is None:
            break
    assert seen == ids


async def test_recent_returns_the_newest_messages_in_order(store: Store, user: str) -> None:
    thread = await store.threads.create(user)
    for i in range(30):
        await store.messages.add(user, thread["id"], {"role": "user", "content": f"m{i}"})
    recent = await store.messages.recent(user, thread["id"], 10)
    assert [m["content"] for m in recent] == [f"m{i}" for i in range(20, 30)]
    everything = await store.messages.recent(user, thread["id"], 1000)
    assert [m["content"] for m in everything] == [f"m{i}" for i in range(30)]
    assert await store.messages.recent(user, thread["id"], 0) == []


async def test_fifty_concurrent_writers_to_one_thread_lose_nothing(
    store: Store, settings, user: str
) -> None:
    """Writers share the thread across two independently opened stores (two pools/locks)."""
    second = await open_store(settings)
    try:
        thread = await store.threads.create(user)
        stores = [store, second]
        added = await asyncio.gather(
            *(
                stores[i % 2].messages.add(user, thread["id"], {"role": "user", "content": f"w{i}"})
                for i in range(50)
            )
        )
    finally:
        await second.close()
    assert len({m["id"] for m in added}) == 50
    listed, cursor = await store.messages.list(user, thread["id"], limit=100)
    assert cursor is None
    assert sorted(m["content"] for m in listed) == sorted(f"w{i}" for i in range(50))
    assert {m["id"] for m in listed} == {m["id"] for m in added}


# --- workflows -----------------------------------------------------------------------------


def _workflow(workflow_id: str, name: str = "Flow", **extra) -> dict:
    graph = {"nodes": [{"id": "n1", "type": "nodetool.input.StringInput", "data": {}}], "edges": []}
    return {"id": workflow_id, "name": name, "description": "d", "graph": graph, **extra}


async def test_workflow_upsert_keeps_the_whole_json(store: Store, user: str) -> None:
    wf_id = f"wf-{uuid.uuid4().hex}"
    stored = await store.workflows.upsert(user, _workflow(wf_id, tags=["a"], settings={"x": 1}))
    assert stored["id"] == wf_id and stored["user_id"] == user
    assert stored["tags"] == ["a"] and stored["settings"] == {"x": 1}
    assert stored["graph"]["nodes"][0]["type"] == "nodetool.input.StringInput"
    assert await store.workflows.get(user, wf_id) == stored

    changed = await store.workflows.upsert(user, _workflow(wf_id, name="Renamed"))
    assert changed["name"] == "Renamed" and "tags" not in changed
    assert changed["created_at"] == stored["created_at"]
    generated = await store.workflows.upsert(user, _workflow(""))
    assert generated["id"]


async def test_workflows_shared_and_private_visibility(store: Store, user: str, other: str) -> None:
    shared_id, own_id = f"shared-{uuid.uuid4().hex}", f"own-{uuid.uuid4().hex}"
    await store.workflows.upsert(None, _workflow(shared_id, name="aaa shared"))
    await store.workflows.upsert(user, _workflow(own_id, name="bbb own"))

    mine = [w["id"] for w in await store.workflows.list(user)]
    theirs = [w["id"] for w in await store.workflows.list(other)]
    assert shared_id in mine and own_id in mine and mine.index(shared_id) < mine.index(own_id)
    assert shared_id in theirs and own_id not in theirs
    assert (await store.workflows.get(other, shared_id))["user_id"] is None
    assert await store.workflows.get(other, own_id) is None

    with pytest.raises(PermissionDeniedError):
        await store.workflows.upsert(user, _workflow(shared_id))
    assert await store.workflows.delete(user, shared_id) is False
    assert await store.workflows.delete(other, own_id) is False
    # ids are per user: the other user takes the same id as his own; the first is untouched
    theirs_now = await store.workflows.upsert(other, _workflow(own_id, name="other's"))
    assert theirs_now["user_id"] == other and theirs_now["name"] == "other's"
    assert (await store.workflows.get(user, own_id))["name"] == "bbb own"
    assert (await store.workflows.get(other, own_id))["name"] == "other's"
    with pytest.raises(ConflictError):  # a shared workflow cannot take a user's id
        await store.workflows.upsert(None, _workflow(own_id))
    assert await store.workflows.delete(other, own_id) is True
    updated = await store.workflows.upsert(None, _workflow(shared_id, name="aaa v2"))
    assert updated["name"] == "aaa v2"
    assert await store.workflows.delete(user, own_id) is True
    assert await store.workflows.get(user, own_id) is None


# --- jobs ----------------------------------------------------------------------------------


async def test_job_lifecycle_sets_timestamps(store: Store, user: str, other: str) -> None:
    job = await store.jobs.create(user, "wf", {"text": "hi"}, thread_id="t1", graph={"nodes": []})
    assert job["status"] == "queued" and job["params"] == {"text": "hi"}
    assert job["started_at"] is None and job["finished_at"] is None
    assert await store.jobs.get(user, job["id"]) == job
    assert await store.jobs.get(other, job["id"]) is None

    running = await store.jobs.update(job["id"], status="running")
    assert running["started_at"] and running["finished_at"] is None
    done = await store.jobs.update(job["id"], status="completed", results={"out": [1, "two"]})
    assert done["results"] == {"out": [1, "two"]} and done["finished_at"]
    assert done["started_at"] == running["started_at"]
    assert await store.jobs.get(user, job["id"]) == done


async def test_job_results_encoded_beforehand_are_stored_as_given(store: Store, user: str) -> None:
    """Results handed over as JSON text (the runner encodes them off the loop, checking their
    size) are stored as they are; the record shows their value; a finished job keeps its own."""
    job = await store.jobs.create(user, "wf", {})
    results = {"out": ["é" * 300_000, 2]}
    done = await store.jobs.update(
        job["id"], status="completed", results=JsonText(dumps(results), results)
    )
    assert done["results"] is results and done["status"] == "completed"
    assert (await store.jobs.get(user, job["id"]))["results"] == results
    late = {"out": "late"}
    kept = await store.jobs.update(job["id"], status="failed", results=JsonText(dumps(late), late))
    assert kept["status"] == "completed" and kept["results"] == results


async def test_job_update_errors(store: Store, user: str) -> None:
    job = await store.jobs.create(user, None, {})
    with pytest.raises(InvalidRequestError):
        await store.jobs.update(job["id"], status="exploded")
    with pytest.raises(NotFoundError):
        await store.jobs.update("no-such-job", status="running")
    failed = await store.jobs.update(job["id"], status="failed", error="boom")
    assert failed["error"] == "boom" and failed["finished_at"] and failed["started_at"] is None


async def test_job_events_are_numbered_and_replayable(store: Store, user: str) -> None:
    job = await store.jobs.create(user, "wf", {})
    seqs = await asyncio.gather(
        *(store.jobs.add_event(job["id"], {"type": "node_update", "n": i}) for i in range(30))
    )
    assert sorted(seqs) == list(range(1, 31))
    events = await store.jobs.events(job["id"])
    assert [e["seq"] for e in events] == list(range(1, 31))
    assert sorted(e["n"] for e in events) == list(range(30))
    assert [e["seq"] for e in await store.jobs.events(job["id"], after_seq=27)] == [28, 29, 30]
    with pytest.raises(NotFoundError):
        await store.jobs.add_event("no-such-job", {"type": "x"})


async def test_job_events_in_batches_share_one_numbering(store: Store, user: str) -> None:
    job = await store.jobs.create(user, "wf", {})
    assert await store.jobs.add_event(job["id"], {"type": "first"}) == 1
    batches = await asyncio.gather(
        *(
            store.jobs.add_events(job["id"], [{"type": "b", "batch": b, "i": i} for i in range(50)])
            for b in range(4)
        )
    )
    for seqs in batches:
        assert seqs == list(range(seqs[0], seqs[0] + 50))
    assert sorted(seq for seqs in batches for seq in seqs) == list(range(2, 202))
    events = await store.jobs.events(job["id"])
    assert [e["seq"] for e in events] == list(range(1, 202))
    by_batch = [[e["i"] for e in events if e.get("batch") == b] for b in range(4)]
    assert all(order == list(range(50)) for order in by_batch)
    assert await store.jobs.add_events(job["id"], []) == []
    with pytest.raises(NotFoundError):
        await store.jobs.add_events("no-such-job", [{"type": "x"}])
    with pytest.raises(InvalidRequestError):
        await store.jobs.add_events(job["id"], [{"type": "ok"}, "not an object"])


async def test_fail_unfinished_marks_only_unfinished_jobs(store: Store, user: str) -> None:
    queued = await store.jobs.create(user, "wf", {})
    running = await store.jobs.create(user, "wf", {})
    finished = await store.jobs.create(user, "wf", {})
    await store.jobs.update(running["id"], status="running")
    await store.jobs.update(finished["id"], status="completed", results={})
    assert await store.jobs.fail_unfinished("server restarted") >= 2
    for job in (queued, running):
        now = await store.jobs.get(user, job["id"])
        assert now["status"] == "failed" and now["error"] == "server restarted"
        assert now["finished_at"]
    assert (await store.jobs.get(user, finished["id"]))["status"] == "completed"


# --- jobs on a queue: attempts, cancels, listing ------------------------------------------

JOB_KEYS = {
    "id",
    "user_id",
    "workflow_id",
    "thread_id",
    "status",
    "params",
    "graph",
    "results",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "attempt",
    "max_attempts",
}


async def test_attempts_are_counted_and_fence_superseded_writers(store: Store, user: str) -> None:
    job = await store.jobs.create(user, "wf", {}, max_attempts=3)
    assert set(job) == JOB_KEYS and (job["attempt"], job["max_attempts"]) == (0, 3)
    first = await store.jobs.begin_attempt(job["id"], "worker-a")
    assert first is not None and first.record["status"] == "running"
    assert first.record["attempt"] == 1 and first.record["started_at"] and first.last_seq == 0
    await store.jobs.put_events(job["id"], [{"type": "x", "seq": 1}, {"type": "y", "seq": 2}])
    second = await store.jobs.begin_attempt(job["id"], "worker-b")  # worker-a was lost
    assert second is not None and second.record["attempt"] == 2 and second.last_seq == 2
    assert second.record["started_at"] == first.record["started_at"]
    stale = await store.jobs.update(job["id"], status="completed", results={"a": 1}, attempt=1)
    assert stale["status"] == "running" and stale["results"] is None  # not its job any more
    done = await store.jobs.update(job["id"], status="completed", results={"b": 2}, attempt=2)
    assert (done["status"], done["results"], done["attempt"]) == ("completed", {"b": 2}, 2)
    assert await store.jobs.begin_attempt(job["id"], "worker-c") is None  # finished is final
    with pytest.raises(InvalidRequestError) as err:
        await store.jobs.create(user, "wf", {}, max_attempts=0)
    assert err.value.param == "max_attempts"


async def test_numbered_events_keep_the_first_writer(store: Store, user: str) -> None:
    job = await store.jobs.create(user, "wf", {})
    await store.jobs.put_events(job["id"], [{"n": 1, "seq": 1}, {"n": 2, "seq": 2}])
    await store.jobs.put_events(job["id"], [{"n": "late", "seq": 2}, {"n": 3, "seq": 3}])
    assert [(e["seq"], e["n"]) for e in await store.jobs.events(job["id"])] == [
        (1, 1),
        (2, 2),
        (3, 3),
    ]
    assert await store.jobs.add_event(job["id"], {"n": 4}) == 4  # the counter moved on


async def test_cancel_requests(store: Store, user: str) -> None:
    queued = await store.jobs.create(user, "wf", {})
    assert await store.jobs.request_cancel(queued["id"]) == "cancelled"
    record = await store.jobs.get(user, queued["id"])
    assert (record["status"], record["error"]) == ("cancelled", "cancelled")
    assert await store.jobs.begin_attempt(queued["id"], "w") is None  # never starts now
    running = await store.jobs.create(user, "wf", {})
    await store.jobs.begin_attempt(running["id"], f"owner-{user}")
    assert await store.jobs.cancels_for(f"owner-{user}") == []
    assert await store.jobs.request_cancel(running["id"]) == "requested"
    assert await store.jobs.cancels_for(f"owner-{user}") == [running["id"]]
    assert (await store.jobs.get(user, running["id"]))["status"] == "running"
    again = await store.jobs.begin_attempt(running["id"], "other")  # a re-run sees the flag
    assert again is not None and again.cancel_requested
    await store.jobs.update(running["id"], status="cancelled", error="cancelled")
    assert await store.jobs.request_cancel(running["id"]) == "finished"


async def test_jobs_are_listed_newest_first_with_filters_and_cursors(
    store: Store, user: str, other: str
) -> None:
    made = [await store.jobs.create(user, f"wf-{n % 2}", {}) for n in range(5)]
    await store.jobs.create(other, "wf-0", {})
    await store.jobs.update(made[1]["id"], status="completed", results={})
    page, following = await store.jobs.list(user, limit=3)
    assert [j["id"] for j in page] == [j["id"] for j in made[::-1][:3]]
    rest, last = await store.jobs.list(user, cursor=following, limit=3)
    assert [j["id"] for j in rest] == [made[1]["id"], made[0]["id"]] and last is None
    completed, _ = await store.jobs.list(user, status="completed")
    assert [j["id"] for j in completed] == [made[1]["id"]]
    open_jobs, _ = await store.jobs.list(user, status="queued,running", workflow_id="wf-0")
    assert {j["id"] for j in open_jobs} == {made[0]["id"], made[2]["id"], made[4]["id"]}
    for bad in ({"status": "nope"}, {"status": ""}, {"cursor": "!!"}, {"limit": 0}):
        with pytest.raises(InvalidRequestError):
            await store.jobs.list(user, **bad)
