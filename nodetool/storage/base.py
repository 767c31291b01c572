"""The store interface other layers rely on. Records are plain JSON-ready dicts.

Timestamps are ISO-8601 strings in UTC (`2025-01-31T12:00:00.123456Z`). Ids are time-ordered
strings (see `nodetool.storage.ids`). Every read and write is scoped by `user_id`: one user
never sees, changes or learns about another user's rows. Cursors are opaque strings; a cursor
that cannot be decoded raises `InvalidRequestError(param="cursor")`.

Errors (from `nodetool.errors`): `InvalidRequestError` for bad values (with `param`),
`NotFoundError` when a row the call needs does not exist for this user, `ConflictError` when a
chosen id is taken (thread and workflow ids: by this same user, as they are unique per user),
`PermissionDeniedError` when a shared workflow would be changed by a user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nodetool.storage.responses import ResponseStore

Record = dict[str, Any]
Page = tuple[list[Record], str | None]

ROLES = ("system", "user", "assistant", "tool")


class ThreadStore(Protocol):
    """Chat threads: `{id, title, created_at, updated_at}`; ids are unique per user, so two
    users may each hold a thread with the same (client-chosen) id."""

    async def create(self, user_id: str, id: str | None = None, title: str | None = None) -> Record:
        """A new thread; `ConflictError` if this user already has a thread with the id."""
        ...

    async def ensure(self, user_id: str, id: str | None, title: str | None = None) -> Record:
        """Get-or-create this user's thread (another user's same id is not looked at)."""
        ...

    async def get(self, user_id: str, id: str) -> Record | None: ...

    async def list(self, user_id: str, cursor: str | None = None, limit: int = 50) -> Page:
        """Most recently updated first; `next` is the cursor of the following page or None."""
        ...

    async def update(self, user_id: str, id: str, title: str | None) -> Record | None: ...

    async def delete(self, user_id: str, id: str) -> bool:
        """Delete the thread and its messages; False if it does not exist for this user."""
        ...

    async def touch(self, user_id: str, id: str) -> None:
        """Mark the thread as updated now (no error if it does not exist)."""
        ...


class MessageStore(Protocol):
    """Messages: `{id, thread_id, role, content, tool_calls, tool_call_id, name, model,
    provider, workflow_id, created_at}`; `content` comes back exactly as given."""

    async def add(self, user_id: str, thread_id: str, message: Record) -> Record:
        """Append to the thread (committed when this returns); touches the thread."""
        ...

    async def list(
        self, user_id: str, thread_id: str, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """Oldest first; empty for an unknown thread."""
        ...

    async def recent(self, user_id: str, thread_id: str, limit: int) -> list[Record]:
        """The newest `limit` messages, oldest first."""
        ...

    async def get(self, user_id: str, id: str) -> Record | None: ...


class WorkflowStore(Protocol):
    """NodeTool workflow JSON kept whole, plus `user_id` (None = shared), timestamps; ids are
    unique per user, so two users may each hold a workflow with the same (client-chosen) id."""

    async def upsert(self, user_id: str | None, workflow: Record) -> Record:
        """Insert or replace this user's workflow by `id` (a missing id gets a new one).
        `user_id=None` stores a shared workflow (visible to all, changeable only with
        `user_id=None`); a user saving a shared id gets `PermissionDeniedError`."""
        ...

    async def get(self, user_id: str, id: str) -> Record | None:
        """The user's own or a shared workflow."""
        ...

    async def list(self, user_id: str) -> list[Record]:
        """Own and shared workflows, by name."""
        ...

    async def delete(self, user_id: str, id: str) -> bool:
        """Own workflows only; False otherwise."""
        ...


class JobStore(Protocol):
    """Workflow jobs `{id, user_id, workflow_id, thread_id, status, params, graph, results,
    error, created_at, updated_at, started_at, finished_at, attempt, max_attempts}` and their
    events for replay."""

    async def create(
        self,
        user_id: str,
        workflow_id: str | None,
        params: Record,
        thread_id: str | None = None,
        graph: Record | None = None,
        max_attempts: int = 2,
        first_event: Any = None,
    ) -> Record:
        """A queued job (attempt 0) that may be started up to `max_attempts` times.
        `first_event(record)`, if given, is stored as its event 1 in the same transaction."""
        ...

    async def update(
        self,
        job_id: str,
        *,
        status: str | None = None,
        results: Any = None,
        error: str | None = None,
        attempt: int | None = None,
    ) -> Record:
        """Set status/results/error; `running` sets started_at, a finished status sets
        finished_at. A finished job is final, and with `attempt` only that attempt may write:
        otherwise the update is ignored and the stored record returned. `NotFoundError` for an
        unknown job."""
        ...

    async def get(self, user_id: str, job_id: str) -> Record | None: ...

    async def add_event(self, job_id: str, event: Record) -> int:
        """Store one event; returns its sequence number (1, 2, ... per job)."""
        ...

    async def add_events(self, job_id: str, events: list[Record]) -> list[int]:
        """Store events in one transaction; returns their consecutive sequence numbers."""

    async def put_events(self, job_id: str, events: list[Record]) -> None:
        """Store events numbered by their single writer (each has its `seq`) in one
        transaction; numbers already taken are left alone."""
        ...

    async def events(self, job_id: str, after_seq: int = 0) -> list[Record]:
        """Events with seq > after_seq in order, each the stored dict plus its `seq`."""
        ...

    async def list(
        self,
        user_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """The user's jobs, newest first; `status` may list several, comma separated."""
        ...

    async def begin_attempt(self, job_id: str, owner: str) -> Any:
        """Count a new attempt run by `owner` (an instance id) and mark the job running.
        Returns a `JobAttempt` (record + cancel flag), or None when the job is finished."""
        ...

    async def request_cancel(self, job_id: str) -> str:
        """Cancel a queued job at once (`cancelled`), flag a running one (`requested`), or
        leave a finished one (`finished`)."""
        ...

    async def cancels_for(self, owner: str) -> list[str]:
        """Ids of `owner`'s running jobs that have a cancel requested."""
        ...

    async def fail_unfinished(self, reason: str) -> int:
        """Mark every queued/running job failed, whoever owns it; returns how many."""
        ...


class JobLeaseStore(Protocol):
    """Leases on jobs, the queue of PostgreSQL deployments without Redis (`supported` is
    False elsewhere). `owner` is an instance id; `lease` is in seconds."""

    @property
    def supported(self) -> bool: ...

    async def take(self, owner: str, count: int, lease: float) -> list[str]:
        """Lease up to `count` queued, unleased jobs (oldest first); their ids."""
        ...

    async def claim(self, owner: str, count: int, lease: float) -> list[str]:
        """Lease up to `count` running jobs whose lease ran out; their ids."""
        ...

    async def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        """Extend `owner`'s leases; the ids it still holds."""
        ...


class Store(Protocol):
    """All stores of one database."""

    threads: ThreadStore
    messages: MessageStore
    workflows: WorkflowStore
    jobs: JobStore
    job_leases: JobLeaseStore
    responses: ResponseStore  # nodetool.storage.responses

    async def close(self) -> None: ...
