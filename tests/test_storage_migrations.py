"""Schema versions: older databases upgrade with their data intact; URLs; SQLite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text

from nodetool.config import Settings, SettingsError
from nodetool.storage import open_store
from nodetool.storage.db import Database, database_url
from nodetool.storage.migrations import LATEST, SchemaVersionError, current_version, migrate
from nodetool.storage.schema import SCHEMA_VERSION, metadata
from tests.support.storage import BACKENDS, backend_settings

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def settings(request, tmp_path) -> AsyncIterator[Settings]:
    async with backend_settings(request.param, tmp_path) as value:
        yield value


async def _insert_v1_data(db: Database) -> None:
    """Rows as nodetool with schema version 1 wrote them (raw SQL against the v1 tables)."""
    rows = [
        (
            "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
            "VALUES (:id, :u, :title, :at, :at)",
            [{"id": "thread-1", "u": "alice", "title": "Old thread", "at": T0}],
        ),
        (
            "INSERT INTO messages (id, thread_id, user_id, role, content, tool_calls, "
            "tool_call_id, name, model, provider, workflow_id, created_at) VALUES "
            "(:id, 'thread-1', 'alice', :role, :content, :calls, NULL, NULL, 'm', 'p', NULL, :at)",
            [
                {
                    "id": "01hx0000000000000000000001",
                    "role": "user",
                    "content": json.dumps("hello from v1"),
                    "calls": None,
                    "at": T0,
                },
                {
                    "id": "01hx0000000000000000000002",
                    "role": "assistant",
                    "content": json.dumps([{"type": "text", "text": "parts"}]),
                    "calls": json.dumps([{"id": "c", "type": "function", "function": {}}]),
                    "at": T0,
                },
            ],
        ),
        (
            "INSERT INTO workflows (id, user_id, name, description, data, created_at, "
            "updated_at) VALUES ('wf-1', NULL, 'Shared', '', :data, :at, :at)",
            [{"data": json.dumps({"id": "wf-1", "name": "Shared", "graph": {}}), "at": T0}],
        ),
        (
            "INSERT INTO jobs (id, user_id, workflow_id, thread_id, status, params, graph, "
            "results, error, created_at, updated_at, started_at, finished_at) VALUES "
            "('job-1', 'alice', 'wf-1', NULL, 'running', :params, NULL, NULL, NULL, "
            ":at, :at, :at, NULL)",
            [{"at": T0, "params": json.dumps({"a": 1})}],
        ),
        (
            "INSERT INTO job_events (job_id, seq, event, created_at) "
            "VALUES ('job-1', :seq, :event, :at)",
            [
                {"seq": n, "event": json.dumps({"type": "node_update", "n": n}), "at": T0}
                for n in (1, 2, 3)
            ],
        ),
    ]
    async with db.write() as conn:
        for sql, params in rows:
            await conn.execute(text(sql), params)


async def test_version_one_database_upgrades_with_data_intact(settings: Settings) -> None:
    db = Database.from_settings(settings)
    assert await migrate(db, target=1) == 1
    await _insert_v1_data(db)
    await db.dispose()

    store = await open_store(settings)
    try:
        assert await current_version(store.db) == LATEST == SCHEMA_VERSION >= 2
        thread = await store.threads.get("alice", "thread-1")
        assert thread["title"] == "Old thread" and thread["created_at"].startswith("2024-05-01T12")
        listed, _ = await store.messages.list("alice", "thread-1")
        assert [m["content"] for m in listed] == [
            "hello from v1",
            [{"type": "text", "text": "parts"}],
        ]
        assert listed[1]["tool_calls"][0]["id"] == "c" and listed[0]["model"] == "m"
        assert (await store.workflows.get("bob", "wf-1"))["name"] == "Shared"
        job = await store.jobs.get("alice", "job-1")
        assert job["status"] == "running" and job["params"] == {"a": 1}
        # v2's per-job event counter was backfilled: numbering continues after the old events
        assert await store.jobs.add_event("job-1", {"type": "job_update"}) == 4
        assert [e["seq"] for e in await store.jobs.events("job-1")] == [1, 2, 3, 4]
        # and new writes work on the upgraded schema
        added = await store.messages.add("alice", "thread-1", {"role": "user", "content": "new"})
        assert (await store.messages.recent("alice", "thread-1", 1)) == [added]
    finally:
        await store.close()


async def test_version_three_database_gains_job_attempts(settings: Settings) -> None:
    db = Database.from_settings(settings)
    assert await migrate(db, target=3) == 3
    async with db.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO jobs (id, user_id, workflow_id, thread_id, status, params, graph, "
                "results, error, created_at, updated_at, started_at, finished_at, event_seq, "
                "owner, heartbeat_at) "
                "VALUES (:id, 'alice', NULL, NULL, 'running', '{}', NULL, NULL, NULL, "
                ":at, :at, :at, NULL, 0, 'host:1:abc', :at)"
            ),
            [{"id": "job-v3", "at": T0}],
        )
    await db.dispose()

    store = await open_store(settings)
    try:
        assert await current_version(store.db) == LATEST == SCHEMA_VERSION >= 5
        job = await store.jobs.get("alice", "job-v3")
        assert (job["status"], job["attempt"], job["max_attempts"]) == ("running", 0, 2)
        begun = await store.jobs.begin_attempt("job-v3", "instance-1")
        assert begun is not None and begun.record["attempt"] == 1 and not begun.cancel_requested
        async with store.db.read() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("jobs")}
            )
        assert "heartbeat_at" not in columns and {"attempt", "cancel_requested"} <= columns
    finally:
        await store.close()


async def test_version_five_database_gains_per_user_thread_ids(settings: Settings) -> None:
    """v7 rebuilds threads and messages keyed by user: old rows survive, ids become per user."""
    db = Database.from_settings(settings)
    assert await migrate(db, target=1) == 1
    await _insert_v1_data(db)
    assert await migrate(db, target=5) == 5
    async with db.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO threads (id, user_id, title, created_at, updated_at) "
                "VALUES ('bob-thread', 'bob', NULL, :at, :at)"
            ),
            {"at": T0},
        )
    await db.dispose()

    store = await open_store(settings)
    try:
        assert await current_version(store.db) == LATEST == SCHEMA_VERSION >= 7
        assert (await store.threads.get("alice", "thread-1"))["title"] == "Old thread"
        assert await store.threads.get("bob", "bob-thread") is not None
        listed, _ = await store.messages.list("alice", "thread-1")
        assert [m["id"] for m in listed] == [
            "01hx0000000000000000000001",
            "01hx0000000000000000000002",
        ]
        # bob may now hold alice's id as his own thread; hers is untouched
        assert (await store.threads.create("bob", id="thread-1"))["title"] is None
        await store.messages.add("bob", "thread-1", {"role": "user", "content": "bob's"})
        assert len((await store.messages.list("alice", "thread-1"))[0]) == 2
        # the cascade from a thread to its messages still holds, per user
        assert await store.threads.delete("alice", "thread-1") is True
        async with store.db.read() as conn:
            left = (
                await conn.execute(text("SELECT user_id, content FROM messages ORDER BY id"))
            ).all()
            keys = await conn.run_sync(
                lambda c: (
                    inspect(c).get_pk_constraint("threads")["constrained_columns"],
                    [
                        (fk["constrained_columns"], fk["referred_table"])
                        for fk in inspect(c).get_foreign_keys("messages")
                    ],
                )
            )
        assert [tuple(row) for row in left] == [("bob", json.dumps("bob's"))]
        assert keys == (["user_id", "id"], [(["user_id", "thread_id"], "threads")])
    finally:
        await store.close()


async def test_version_seven_database_gains_per_user_workflow_ids(settings: Settings) -> None:
    """v8 rebuilds workflows keyed by user: old rows survive (shared ones stay shared), and
    another user may then hold an id that was taken, without seeing or changing the first."""
    db = Database.from_settings(settings)
    assert await migrate(db, target=1) == 1
    await _insert_v1_data(db)  # shared 'wf-1'; alice's job-1 runs it
    assert await migrate(db, target=7) == 7
    async with db.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (id, user_id, name, description, data, created_at, "
                "updated_at) VALUES ('alice-wf', 'alice', 'Plans', 'd', :data, :at, :at)"
            ),
            {"data": json.dumps({"id": "alice-wf", "name": "Plans", "graph": {}}), "at": T0},
        )
    await db.dispose()

    store = await open_store(settings)
    try:
        assert await current_version(store.db) == LATEST == SCHEMA_VERSION >= 8
        shared = await store.workflows.get("bob", "wf-1")
        assert shared["user_id"] is None and shared["name"] == "Shared"
        mine = await store.workflows.get("alice", "alice-wf")
        assert (mine["user_id"], mine["name"], mine["created_at"]) == (
            "alice",
            "Plans",
            "2024-05-01T12:00:00.000000Z",
        )
        assert await store.workflows.get("bob", "alice-wf") is None
        assert (await store.jobs.get("alice", "job-1"))["workflow_id"] == "wf-1"
        bobs = await store.workflows.upsert("bob", {"id": "alice-wf", "name": "Bob's"})
        assert bobs["user_id"] == "bob"
        assert (await store.workflows.get("alice", "alice-wf"))["name"] == "Plans"
        assert [w["id"] for w in await store.workflows.list("bob")] == ["alice-wf", "wf-1"]
        async with store.db.read() as conn:
            key = await conn.run_sync(
                lambda c: inspect(c).get_pk_constraint("workflows")["constrained_columns"]
            )
        assert key == ["user_id", "id"]
    finally:
        await store.close()


async def test_migrated_schema_matches_the_declared_tables(settings: Settings) -> None:
    store = await open_store(settings)
    try:
        async with store.db.read() as conn:
            found = await conn.run_sync(_describe)
    finally:
        await store.close()
    for table in metadata.sorted_tables:
        columns, indexes = found[table.name]
        assert columns == {c.name: c.nullable for c in table.columns}, table.name
        assert indexes == {i.name for i in table.indexes}, table.name


def _describe(conn) -> dict[str, tuple[dict[str, bool], set[str]]]:
    inspector = inspect(conn)
    return {
        name: (
            {c["name"]: c["nullable"] for c in inspector.get_columns(name)},
            {i["name"] for i in inspector.get_indexes(name)},
        )
        for name in inspector.get_table_names()
        if name != "schema_version"
    }


async def test_reopening_is_idempotent_and_newer_schemas_are_refused(settings: Settings) -> None:
    for _ in range(2):
        store = await open_store(settings)
        await store.close()
    db = Database.from_settings(settings)
    try:
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO schema_version (version, applied_at) VALUES (:v, 'future')"),
                {"v": LATEST + 1},
            )
    finally:
        await db.dispose()
    with pytest.raises(SchemaVersionError, match="newer"):
        await open_store(settings)


async def test_sqlite_file_is_created_in_wal_mode(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "deep" / "data", database_url=None, _env_file=None)
    store = await open_store(settings)
    try:
        assert (tmp_path / "deep" / "data" / "nodetool.db").is_file()
        async with store.db.read() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        assert (mode, sync, fks) == ("wal", 2, 1)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://h/db", "postgresql+asyncpg://h/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_database_url_selects_asyncpg_for_postgres(url: str, expected: str) -> None:
    assert database_url(Settings(database_url=url, _env_file=None)) == expected


def test_database_url_sqlite_paths(tmp_path) -> None:
    default = database_url(Settings(data_dir=tmp_path / "d", _env_file=None))
    assert default == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'nodetool.db'}"
    assert (tmp_path / "d").is_dir()
    explicit = database_url(Settings(database_url=f"sqlite:///{tmp_path}/x/y.db", _env_file=None))
    assert explicit == f"sqlite+aiosqlite:///{tmp_path}/x/y.db"


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://", "sqlite:///:memory:", "nonsense"])
def test_database_url_rejects_unsupported(url: str) -> None:
    with pytest.raises(SettingsError, match="NODETOOL_DATABASE_URL"):
        database_url(Settings(database_url=url, _env_file=None))
