"""The current schema (version 8) as SQLAlchemy Core tables, used by the queries.

Migrations (`migrations.py`) create and upgrade databases to exactly this shape; a test checks
that the migrated database matches these tables. JSON values are stored as text.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
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
)

SCHEMA_VERSION = 8


def id_type(length: int = 128) -> String:
    """Ids compare bytewise on every backend (PostgreSQL: C collation), so time order holds."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def timestamp() -> DateTime:
    return DateTime(timezone=True)


metadata = MetaData()

# v7: a thread id is unique per user only (clients choose ids; another user's is invisible)
threads = Table(
    "threads",
    metadata,
    Column("id", id_type(), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("title", Text, nullable=True),
    Column("created_at", timestamp(), nullable=False),
    Column("updated_at", timestamp(), nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    Index("ix_threads_user_updated", "user_id", "updated_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", id_type(32), primary_key=True),
    Column("thread_id", id_type(), nullable=False),
    Column("user_id", String(128), nullable=False),  # the thread's owner
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=True),  # JSON: a string, a list of parts, or null
    Column("tool_calls", Text, nullable=True),  # JSON list
    Column("tool_call_id", String(256), nullable=True),
    Column("name", String(256), nullable=True),
    Column("model", String(256), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("workflow_id", String(128), nullable=True),
    Column("created_at", timestamp(), nullable=False),
    ForeignKeyConstraint(
        ["user_id", "thread_id"], ["threads.user_id", "threads.id"], ondelete="CASCADE"
    ),
    Index("ix_messages_user_thread", "user_id", "thread_id", "id"),  # v7
)

# v8: a workflow id is unique per user only (like threads); shared ones belong to SHARED_OWNER
SHARED_OWNER = ""  # user_id of shared workflows (from --workflow files)
workflows = Table(
    "workflows",
    metadata,
    Column("id", id_type(), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("data", Text, nullable=False),  # the whole NodeTool workflow JSON
    Column("created_at", timestamp(), nullable=False),
    Column("updated_at", timestamp(), nullable=False),
    PrimaryKeyConstraint("user_id", "id"),
    Index("ix_workflows_id", "id"),  # v8: is an id shared (or held by anyone)?
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", id_type(32), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("workflow_id", String(128), nullable=True),
    Column("thread_id", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=False),  # JSON object
    Column("graph", Text, nullable=True),  # JSON object
    Column("results", Text, nullable=True),  # JSON
    Column("error", Text, nullable=True),
    Column("created_at", timestamp(), nullable=False),
    Column("updated_at", timestamp(), nullable=False),
    Column("started_at", timestamp(), nullable=True),
    Column("finished_at", timestamp(), nullable=True),
    Column("event_seq", Integer, nullable=False, server_default="0"),  # v2: last event's seq
    Column("owner", String(300), nullable=True),  # v3, v5: instance id of the running worker
    Column("attempt", Integer, nullable=False, server_default="0"),  # v5: runs started
    Column("max_attempts", Integer, nullable=False, server_default="2"),  # v5
    Column("cancel_requested", Integer, nullable=False, server_default="0"),  # v5: 0/1
    Column("lease_until", timestamp(), nullable=True),  # v6: the owner's lease (no Redis)
    Index("ix_jobs_user_id", "user_id", "id"),
    Index("ix_jobs_status", "status"),  # v2
    Index("ix_jobs_owner", "owner"),  # v5
    Index("ix_jobs_status_lease", "status", "lease_until"),  # v6
)

job_events = Table(
    "job_events",
    metadata,
    Column("job_id", id_type(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event", Text, nullable=False),  # JSON object
    Column("created_at", timestamp(), nullable=False),
)

responses = Table(
    "responses",
    metadata,
    Column("id", id_type(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("previous_response_id", String(64), nullable=True),
    Column("response", Text, nullable=False),  # JSON: the `response` object as last sent
    Column("input_items", Text, nullable=False),  # JSON list: this request's input items
    Column("history", Text, nullable=False),  # JSON list: the conversation, for follow-ups
    Column("created_at", timestamp(), nullable=False),
    Index("ix_responses_user_id", "user_id", "id"),  # v4
)
