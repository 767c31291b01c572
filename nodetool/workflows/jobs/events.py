"""The job event log: numbers, stores and publishes a job's events.

Events are typed (`nodetool/types/jobs.py`); the log keeps their wire dicts (`to_wire`), as
the store and the Redis stream hold them, and followers turn them back (`from_wire`).
Every event of a job carries a `seq` (1, 2, ... per job), given by the one writer of the job
at that moment (the submitter, then each attempt's runner, numbering on from what the store
and the Redis stream have). `EventLog.emit` never waits: it numbers the event and hands it to
this process's `Hub` (followers here); a writer task then appends each batch to the job's
Redis stream (followers elsewhere) and stores batches in few transactions (a database
transaction per streamed token would be most of a job's cost). Without Redis, a stored
batch is announced by a `Signals` wake-up (PostgreSQL NOTIFY): followers elsewhere read the
store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nodetool.types.jobs import (
    TERMINAL_JOB_STATUSES,
    JobEvent,
    JobStatus,
    JobUpdate,
    is_terminal,
    to_wire,
)

if TYPE_CHECKING:
    from nodetool.storage.base import JobStore
    from nodetool.workflows.jobs.redis_link import RedisLink
    from nodetool.workflows.jobs.signals import Signals

log = logging.getLogger(__name__)

Event = dict[str, Any]  # a numbered event's wire dict, as stored and streamed
EVENTS_CHANNEL = "nodetool_job_events"  # Signals channel: payload is the job id
STORED_CHANNEL = "stored"  # in-process only: a batch that followers had from Redis is stored
WRITE_BATCH = 200  # events sent and stored together (bounded event-loop work per step)
STORE_LINGER = 0.25  # seconds events sent to Redis may wait to be stored with later ones
NOTIFY_LINGER = 0.03  # the same without Redis (followers elsewhere read the store)
_FLUSH = object()  # store what is waiting now


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
        if sent:  # followers here that found a gap wait for the store
            self.signals.fire_local(STORED_CHANNEL, job_id)
        else:  # no Redis, or Redis is away: followers elsewhere read the store
            await self.signals.send(EVENTS_CHANNEL, job_id)


class EventLog:
    """One writer's events: `emit` numbers an event and hands it to this process's
    followers at once; a writer task sends each batch to Redis as it comes and stores them
    in order, gathering what arrives within `STORE_LINGER` seconds (`NOTIFY_LINGER` when
    followers elsewhere wait for the store: no Redis) into one transaction. The final event,
    `flush` and `close` store at once."""

    def __init__(self, jobs: JobStore, publisher: Publisher, job_id: str, last_seq: int) -> None:
        self.jobs = jobs
        self.publisher = publisher
        self.job_id = job_id
        self._seq = self._stored = last_seq
        self._progress = asyncio.Event()
        self._unsaved: asyncio.Queue[Event | object | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def emit(self, event: JobEvent) -> None:
        self._seq += 1
        numbered = to_wire(event)
        numbered["seq"] = self._seq
        if not is_terminal(event):  # the final event is shown once all is stored
            self.publisher.hub.publish(self.job_id, [numbered])
        self._unsaved.put_nowait(numbered)

    async def flush(self) -> None:
        """Wait until everything emitted so far is stored (or failed to store)."""
        self._unsaved.put_nowait(_FLUSH)
        while self._stored < self._seq and not self._writer.done():
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Send and store everything emitted so far, then stop the writer."""
        self._unsaved.put_nowait(None)
        await asyncio.gather(self._writer, return_exceptions=True)

    async def _next(self, timeout: float | None) -> list[Event | object | None]:
        """What was emitted: at least one item, or nothing after `timeout` seconds."""
        if self._unsaved.empty():
            try:
                async with asyncio.timeout(timeout):
                    first = await self._unsaved.get()
            except TimeoutError:
                return []
            items = [first]
        else:
            items = []
        while not self._unsaved.empty():
            items.append(self._unsaved.get_nowait())
        return items

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        unstored: list[Event] = []
        store_at = 0.0  # when `unstored` must be stored at the latest
        all_sent = True  # every unstored event reached Redis
        closed = False
        while not closed:
            timeout = max(0.0, store_at - loop.time()) if unstored else None
            items = await self._next(timeout)
            closed = None in items
            now_please = closed or _FLUSH in items
            events = [item for item in items if isinstance(item, dict)]
            for start in range(0, len(events), WRITE_BATCH):  # the loop breathes between
                chunk = events[start : start + WRITE_BATCH]
                if any(is_terminal_wire(e) for e in chunk):
                    await self._end(unstored, chunk, all_sent)
                    unstored, all_sent = [], True
                    continue
                sent = await self.publisher.to_redis(self.job_id, chunk, final=False)
                linger = STORE_LINGER if sent else NOTIFY_LINGER
                store_at = min(store_at, loop.time() + linger) if unstored else loop.time() + linger
                all_sent = all_sent and sent
                unstored.extend(chunk)
                if len(unstored) >= WRITE_BATCH:  # bounded transactions; the loop breathes
                    await self._save(unstored, all_sent)
                    unstored, all_sent = [], True
            if unstored and (now_please or loop.time() >= store_at):
                await self._save(unstored, all_sent)
                unstored, all_sent = [], True
            elif not unstored:
                self._progress.set()  # a flush with nothing left to store

    async def _end(self, unstored: list[Event], chunk: list[Event], all_sent: bool) -> None:
        """Store everything, then show the final event (in `chunk`, with the events emitted
        just before it): whoever sees it can replay the whole job from the store."""
        await self._store(unstored + chunk)
        self.publisher.hub.publish(self.job_id, [e for e in chunk if is_terminal_wire(e)])
        sent = await self.publisher.to_redis(self.job_id, chunk, final=True)
        await self.publisher.stored(self.job_id, sent=sent and all_sent)

    async def _save(self, events: list[Event], all_sent: bool) -> None:
        await self._store(events)
        await self.publisher.stored(self.job_id, sent=all_sent)

    async def _store(self, events: list[Event]) -> None:
        try:
            await self.jobs.put_events(self.job_id, events)
        except Exception:
            log.exception("could not store %d event(s) of job %s", len(events), self.job_id)
        self._stored = events[-1]["seq"]
        self._progress.set()
