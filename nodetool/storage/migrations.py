"""Versioned schema migrations and their runner.

Each migration is applied in one transaction together with its `schema_version` row, so a
crash leaves the database at the previous version. On PostgreSQL a transaction-scoped advisory
lock makes concurrently starting processes migrate one at a time; SQLite's write lock does the
same. Migrations never import `schema.py`: version 1 is frozen here as it shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from nodetool.storage.db import Database

_ADVISORY_LOCK_KEY = 7_140_523_118  # arbitrary, identifies nodetool's migration lock


class SchemaVersionError(RuntimeError):
    """The database was made by a newer nodetool than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_metadata() -> MetaData:
    """The first schema: threads, messages, workflows, jobs, job_events."""

    def id_(length: int = 128) -> String:
        return String(length).with_variant(String(length, collation="C"), "postgresql")

    ts = DateTime(timezone=True)
    md = MetaData()
    Table(
        "threads",
        md,
        Column("id", id_(), primary_key=True),
        Column("user_id", String(128), nullable=False),
        Column("title", Text),
        Column("created_at", ts, nullable=False),
        Column("updated_at", ts, nullable=False),
        Index("ix_threads_user_updated", "user_id", "updated_at", "id"),
    )
    Table(
        "messages",
        md,
        Column("id", id_(32), primary_key=True),
        Column("thread_id", id_(), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        Column("user_id", String(128), nullable=False),
        Column("role", String(16), nullable=False),
        Column("content", Text),
        Column("tool_calls", Text),
        Column("tool_call_id", String(256)),
        Column("name", String(256)),
        Column("model", String(256)),
        Column("provider", String(64)),
        Column("workflow_id", String(128)),
        Column("created_at", ts, nullable=False),
        Index("ix_messages_thread_id", "thread_id", "id"),
    )
    Table(
        "workflows",
        md,
        Column("id", id_(), primary_key=True),
        Column("user_id", String(128)),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("data", Text, nullable=False),
        Column("created_at", ts, nullable=False),
        Column("updated_at", ts, nullable=False),
    )
    Table(
        "jobs",
        md,
        Column("id", id_(32), primary_key=True),
        Column("user_id", String(128), nullable=False),
        Column("workflow_id", String(128)),
        Column("thread_id", String(128)),
        Column("status", String(16), nullable=False),
        Column("params", Text, nullable=False),
        Column("graph", Text),
        Column("results", Text),
        Column("error", Text),
        Column("created_at", ts, nullable=False),
        Column("updated_at", ts, nullable=False),
        Column("started_at", ts),
        Column("finished_at", ts),
        Index("ix_jobs_user_id", "user_id", "id"),
    )
    Table(
        "job_events",
        md,
        Column("job_id", id_(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("event", Text, nullable=False),
        Column("created_at", ts, nullable=False),
    )
    return md


def _v1(conn: Connection) -> None:
    _v1_metadata().create_all(conn)


def _v2(conn: Connection) -> None:
    """Per-job event counter (atomic seq allocation), backfilled; status and owner indexes."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0"))
    conn.execute(
        text(
            "UPDATE jobs SET event_seq = COALESCE("
            "(SELECT MAX(seq) FROM job_events WHERE job_events.job_id = jobs.id), 0)"
        )
    )
    conn.execute(text("CREATE INDEX ix_jobs_status ON jobs (status)"))
    conn.execute(text("CREATE INDEX ix_workflows_user_id ON workflows (user_id)"))


def _v3(conn: Connection) -> None:
    """Job ownership: the worker running a job (`host:pid:start`) and its last heartbeat."""
    stamp = DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(300)"))
    conn.execute(text(f"ALTER TABLE jobs ADD COLUMN heartbeat_at {stamp}"))


def _v4(conn: Connection) -> None:
    """Stored `/v1/responses` objects per user, with their input items and conversation."""
    id_ = String(64).with_variant(String(64, collation="C"), "postgresql")
    md = MetaData()
    Table(
        "responses",
        md,
        Column("id", id_, primary_key=True),
        Column("user_id", String(128), nullable=False),
        Column("previous_response_id", String(64)),
        Column("response", Text, nullable=False),
        Column("input_items", Text, nullable=False),
        Column("history", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_responses_user_id", "user_id", "id"),
    )
    md.create_all(conn)


def _v5(conn: Connection) -> None:
    """Jobs on a queue: attempts, per-job attempt limit, a cancel flag; `owner` becomes the
    running worker's instance id and the heartbeat column goes (the queue tracks liveness)."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 2"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE jobs DROP COLUMN heartbeat_at"))
    conn.execute(text("CREATE INDEX ix_jobs_owner ON jobs (owner)"))


def _v6(conn: Connection) -> None:
    """Job leases (PostgreSQL without Redis: the jobs table is the queue, docs/jobs.md)."""
    stamp = DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE jobs ADD COLUMN lease_until {stamp}"))
    conn.execute(text("CREATE INDEX ix_jobs_status_lease ON jobs (status, lease_until)"))


def _v7_tables() -> MetaData:
    """Threads keyed by (user_id, id), messages referencing them by (user_id, thread_id); made
    under temporary names, renamed once the previous tables are gone."""
    id_ = String(128).with_variant(String(128, collation="C"), "postgresql")
    message_id = String(32).with_variant(String(32, collation="C"), "postgresql")
    ts = DateTime(timezone=True)
    md = MetaData()
    Table(
        "threads_v7",
        md,
        Column("id", id_, nullable=False),
        Column("user_id", String(128), nullable=False),
        Column("title", Text),
        Column("created_at", ts, nullable=False),
        Column("updated_at", ts, nullable=False),
        PrimaryKeyConstraint("user_id", "id"),
    )
    Table(
        "messages_v7",
        md,
        Column("id", message_id, primary_key=True),
        Column("thread_id", id_, nullable=False),
        Column("user_id", String(128), nullable=False),
        Column("role", String(16), nullable=False),
        Column("content", Text),
        Column("tool_calls", Text),
        Column("tool_call_id", String(256)),
        Column("name", String(256)),
        Column("model", String(256)),
        Column("provider", String(64)),
        Column("workflow_id", String(128)),
        Column("created_at", ts, nullable=False),
        ForeignKeyConstraint(
            ["user_id", "thread_id"],
            ["threads_v7.user_id", "threads_v7.id"],
            ondelete="CASCADE",
        ),
    )
    return md


_MESSAGE_COLUMNS = (
    "id, thread_id, user_id, role, content, tool_calls, tool_call_id, name, model, provider, "
    "workflow_id, created_at"
)


def _v7(conn: Connection) -> None:
    """Thread ids are per user: the key becomes (user_id, id), so two users may hold the same
    client-chosen id and nothing tells one that the other's exists. SQLite cannot change a
    primary key in place, so both tables are rebuilt (the same way on PostgreSQL); a message
    takes its thread's owner (they always matched)."""
    _v7_tables().create_all(conn)
    conn.execute(
        text(
            "INSERT INTO threads_v7 (id, user_id, title, created_at, updated_at) "
            "SELECT id, user_id, title, created_at, updated_at FROM threads"
        )
    )
    conn.execute(
        text(
            f"INSERT INTO messages_v7 ({_MESSAGE_COLUMNS}) "
            "SELECT m.id, m.thread_id, t.user_id, m.role, m.content, m.tool_calls, "
            "m.tool_call_id, m.name, m.model, m.provider, m.workflow_id, m.created_at "
            "FROM messages m JOIN threads t ON t.id = m.thread_id"
        )
    )
    conn.execute(text("DROP TABLE messages"))
    conn.execute(text("DROP TABLE threads"))
    # renaming also renames the reference in messages_v7's foreign key (SQLite >= 3.26)
    conn.execute(text("ALTER TABLE threads_v7 RENAME TO threads"))
    conn.execute(text("ALTER TABLE messages_v7 RENAME TO messages"))
    conn.execute(text("CREATE INDEX ix_threads_user_updated ON threads (user_id, updated_at, id)"))
    conn.execute(text("CREATE INDEX ix_messages_user_thread ON messages (user_id, thread_id, id)"))


def _v8(conn: Connection) -> None:
    """Workflow ids are per user: the key becomes (user_id, id), so two users may hold the same
    client-chosen id and saving one never tells that another user's exists. Shared workflows
    (user_id NULL before) are owned by `''` (a key column cannot be NULL). Rebuilt like v7."""
    id_ = String(128).with_variant(String(128, collation="C"), "postgresql")
    ts = DateTime(timezone=True)
    md = MetaData()
    Table(
        "workflows_v8",
        md,
        Column("id", id_, nullable=False),
        Column("user_id", String(128), nullable=False),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("data", Text, nullable=False),
        Column("created_at", ts, nullable=False),
        Column("updated_at", ts, nullable=False),
        PrimaryKeyConstraint("user_id", "id"),
    )
    md.create_all(conn)
    conn.execute(
        text(
            "INSERT INTO workflows_v8 (id, user_id, name, description, data, created_at, "
            "updated_at) SELECT id, COALESCE(user_id, ''), name, description, data, created_at, "
            "updated_at FROM workflows"
        )
    )
    conn.execute(text("DROP TABLE workflows"))
    conn.execute(text("ALTER TABLE workflows_v8 RENAME TO workflows"))
    conn.execute(text("CREATE INDEX ix_workflows_id ON workflows (id)"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "threads, messages, workflows, jobs, job_events", _v1),
    Migration(2, "jobs.event_seq; indexes on jobs.status and workflows.user_id", _v2),
    Migration(3, "jobs.owner and jobs.heartbeat_at (job ownership)", _v3),
    Migration(4, "responses (stored /v1/responses objects)", _v4),
    Migration(5, "jobs.attempt, max_attempts, cancel_requested; no heartbeat_at", _v5),
    Migration(6, "jobs.lease_until (job leases without Redis)", _v6),
    Migration(7, "per-user thread ids: threads keyed by (user_id, id)", _v7),
    Migration(8, "per-user workflow ids: workflows keyed by (user_id, id)", _v8),
)
LATEST = MIGRATIONS[-1].version


async def current_version(db: Database) -> int:
    """The database's schema version (0 when it has none yet)."""
    async with db.read() as conn:
        exists = await conn.run_sync(lambda c: c.dialect.has_table(c, "schema_version"))
        if not exists:
            return 0
        value = (await conn.execute(text("SELECT MAX(version) FROM schema_version"))).scalar()
        return int(value or 0)


async def migrate(db: Database, target: int | None = None) -> int:
    """Bring the database to `target` (default: latest); returns the version reached."""
    target = LATEST if target is None else target
    async with db.write() as conn:
        if db.dialect == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at VARCHAR(40) NOT NULL)"
            )
        )
        found = (await conn.execute(text("SELECT MAX(version) FROM schema_version"))).scalar()
        version = int(found or 0)
        if version > LATEST:
            raise SchemaVersionError(
                f"the database schema is version {version}, newer than this nodetool "
                f"supports ({LATEST}); upgrade nodetool or use another database"
            )
        for migration in MIGRATIONS:
            if version < migration.version <= target:
                await conn.run_sync(migration.apply)
                await conn.execute(
                    text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :at)"),
                    {"v": migration.version, "at": datetime.now(UTC).isoformat()},
                )
                version = migration.version
    return version


async def migrated(db: Database) -> Database:
    """`db` brought to the latest schema; disposed of if that fails."""
    try:
        await migrate(db)
    except BaseException:
        await db.dispose()
        raise
    return db
