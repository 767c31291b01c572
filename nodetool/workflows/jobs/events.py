"""The job event log: numbers, stores and publishes a job's events.

Events are typed (`nodetool/types/jobs.py`); the log keeps their wire dicts (`to_wire`), as
the store and the Redis stream hold them, and followers turn them back (`from_wire`).
Every event of a job carries a `seq` (1, 2, ... per job), given by the one writer of the job
at that moment (the submitter, then each attempt's runner, numbering on from what the store
and the Redis stream have). `EventLog.emit` never waits: it numbers the event and hands it to
this process's `Hub` (followers here); a writer task then appends each batch to the job's
Redis stream (followers elsewhere) and stores it in one transaction. Without Redis, a stored
batch is announced by a `Signals` wake-up (PostgreSQL NOTIFY): followers elsewhere read the
store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nodetool.types.jobs import TERMINAL_JOB_STATUSES, JobEvent, JobStatus, JobUpdate, to_wire

if TYPE_CHECKING:
    from nodetool.storage.base import JobStore
    from nodetool.workflows.jobs.redis_link import RedisLink
    from nodetool.workflows.jobs.signals import Signals

log = logging.getLogger(__name__)

Event = dict[str, Any]  # a numbered event's wire dict, as stored and streamed
EVENTS_CHANNEL = "nodetool_job_events"  # Signals channel: payload is the job id
WRITE_BATCH = 200  # events sent and stored together (bounded event-loop work per step)


def is_terminal_wire(event: Mapping[str, Any]) -> bool:
    """Whether a stored or streamed wire dict is a job's final `job_update`."""
    return event.get("type") == "job_update" and event.get("status") in TERMINAL_JOB_STATUSES


def job_update(record: Mapping[str, Any], status: JobStatus, **extra: Any) -> JobUpdate:
    """A `job_update` for the job `record`."""
    return JobUpdate(record["id"], record.get("workflow_id"), status, **extra)


def terminal_of(record: Mapping[str, Any]) -> JobUpdate:
    """The final `job_update` of a finished job record (when no stored event says it)."""
    attempt = record.get("attempt", 0)
    if record["status"] == "completed":
        return job_update(record, "completed", attempt=attempt, result=record.get("results"))
    return job_update(record, record["status"], attempt=attempt, error=record.get("error"))


class Hub:
    """In-process fan-out of stored events to this process's followers, by job id."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[list[Event]]]] = {}

    def subscribe(self, job_id: str) -> asyncio.Queue[list[Event]]:
        queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._queues.setdefault(job_id, set()).add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[list[Event]]) -> None:
        queues = self._queues.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[job_id]

    def publish(self, job_id: str, events: list[Event]) -> None:
        for queue in self._queues.get(job_id, ()):
            queue.put_nowait(events)


class Publisher:
    """Where numbered events go: the hub at once, then Redis (or, without it, a NOTIFY
    wake-up once they are stored)."""

    def __init__(self, hub: Hub, redis: RedisLink | None, signals: Signals) -> None:
        self.hub = hub
        self.redis = redis
        self.signals = signals

    async def last_seq(self, job_id: str, stored: int) -> int:
        """Where a new attempt numbers from: past what the store and the stream have seen
        (a lost worker may have published events it never stored)."""
        if self.redis is None:
            return stored
        return max(stored, await self.redis.last_seq(job_id))

    async def to_redis(self, job_id: str, events: list[Event], *, final: bool) -> bool:
        return self.redis is not None and await self.redis.add_events(job_id, events, final=final)

    async def stored(self, job_id: str, *, sent: bool) -> None:
        if not sent:  # no Redis, or Redis is away: followers elsewhere read the store
            await self.signals.send(EVENTS_CHANNEL, job_id)


class EventLog:
    """One writer's events: `emit` numbers an event and hands it to this process's
    followers at once; a writer task sends batches to Redis and stores them in order."""

    def __init__(self, jobs: JobStore, publisher: Publisher, job_id: str, last_seq: int) -> None:
        self.jobs = jobs
        self.publisher = publisher
        self.job_id = job_id
        self._seq = self._stored = last_seq
        self._progress = asyncio.Event()
        self._unsaved: asyncio.Queue[Event | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def emit(self, event: JobEvent) -> None:
        self._seq += 1
        numbered = to_wire(event)
        numbered["seq"] = self._seq
        self.publisher.hub.publish(self.job_id, [numbered])
        self._unsaved.put_nowait(numbered)

    async def flush(self) -> None:
        """Wait until everything emitted so far is stored (or failed to store)."""
        while self._stored < self._seq and not self._writer.done():
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Send and store everything emitted so far, then stop the writer."""
        self._unsaved.put_nowait(None)
        await asyncio.gather(self._writer, return_exceptions=True)

    async def _write(self) -> None:
        closed = False
        while not closed:
            batch = [await self._unsaved.get()]
            while not self._unsaved.empty():
                batch.append(self._unsaved.get_nowait())
            closed = batch[-1] is None
            events = [e for e in batch if e is not None]
            for start in range(0, len(events), WRITE_BATCH):  # the loop breathes between
                await self._write_batch(events[start : start + WRITE_BATCH])

    async def _write_batch(self, events: list[Event]) -> None:
        final = any(is_terminal_wire(e) for e in events)
        sent = await self.publisher.to_redis(self.job_id, events, final=final)
        try:
            await self.jobs.put_events(self.job_id, events)
        except Exception:
            log.exception("could not store %d event(s) of job %s", len(events), self.job_id)
        self._stored = events[-1]["seq"]
        self._progress.set()
        await self.publisher.stored(self.job_id, sent=sent)
