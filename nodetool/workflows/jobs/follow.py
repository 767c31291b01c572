"""Following a job from any process: its events so far, then live ones, until it ends.

Events are numbered (`seq`) and stored before anyone sees them, so the store is always a
complete fallback. Live events come from, in this order of preference:

- the job's Redis stream (`XREAD` from the start: the replay, then `BLOCK` for new entries);
- this process's `Hub` when the job runs here, or a database signal (PostgreSQL
  `LISTEN/NOTIFY`) telling that new events are stored.

Events travel as wire dicts; a follower yields them typed (`from_wire`) and drops what it
already has by `seq`; a gap, a signal or `QUIET` seconds of silence send it to the store for
the missing events and the job's status (which also ends the follow of a job that finished
without a stored final event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from nodetool.storage.large_json import OFF_LOOP_BYTES
from nodetool.types.jobs import TERMINAL_JOB_STATUSES, JobEvent, from_wire, is_terminal
from nodetool.workflows.jobs.events import EVENTS_CHANNEL, STORED_CHANNEL, Event, Hub, terminal_of
from nodetool.workflows.jobs.redis_link import parse_entry

if TYPE_CHECKING:
    from nodetool.storage.base import JobStore
    from nodetool.workflows.jobs.redis_link import RedisLink
    from nodetool.workflows.jobs.signals import Signals

log = logging.getLogger(__name__)

QUIET = 5.0  # seconds without news before a follower checks the store
POLL = 1.0  # SQLite without Redis, job in another process: how often the store is read


def _typed(wire: Mapping[str, Any]) -> JobEvent | None:
    """A logged wire dict as its typed event; None (logged) for one that is not an event."""
    try:
        return from_wire(wire)
    except (ValueError, TypeError) as exc:
        log.warning("skipping a malformed job event: %s", exc)
        return None


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Follow:
    """One follower's position and wake-ups."""

    def __init__(self, job_id: str, hub: Hub, signals: Signals) -> None:
        self.job_id = job_id
        self.seq = 0
        self.last_id = "0-0"
        self.hub = hub
        self.queue = hub.subscribe(job_id)
        self.wake = asyncio.Event()
        self.gap = False  # the last live events skipped some: waiting for the store
        unsubscribe = (
            signals.on(EVENTS_CHANNEL, self._signal),
            signals.on(STORED_CHANNEL, self._stored),
        )
        self.unsubscribe = lambda: [stop() for stop in unsubscribe]
        self.reading: asyncio.Future[Any] | None = None  # a pending Redis XREAD
        self.reading_started = 0.0

    def _signal(self, payload: str) -> None:
        if payload in (self.job_id, "*"):
            self.wake.set()

    def _stored(self, payload: str) -> None:
        if self.gap and payload == self.job_id:
            self.wake.set()

    def close(self) -> None:
        self.hub.unsubscribe(self.job_id, self.queue)
        self.unsubscribe()
        if self.reading is not None:
            self.reading.cancel()
            self.reading.add_done_callback(_consume)

    def drain(self) -> list[Event]:
        events: list[Event] = []
        while not self.queue.empty():
            events.extend(self.queue.get_nowait())
        return events


class Follower:
    """Builds followers over the store, the hub, Redis and the database signals."""

    def __init__(
        self,
        jobs: JobStore,
        hub: Hub,
        redis: RedisLink | None,
        signals: Signals,
        is_local: Callable[[str], bool],
    ) -> None:
        self.jobs = jobs
        self.hub = hub
        self.redis = redis
        self.signals = signals
        self.is_local = is_local

    def _use_redis(self, job_id: str) -> bool:
        return self.redis is not None and self.redis.outage.may_try() and not self.is_local(job_id)

    async def follow(
        self,
        record: Mapping[str, Any],
        get_record: Callable[[], Awaitable[Mapping[str, Any]]],
    ) -> AsyncIterator[JobEvent]:
        """The job's events in order, ending after its final `job_update`."""
        state = _Follow(record["id"], self.hub, self.signals)
        try:
            finished = record["status"] in TERMINAL_JOB_STATUSES
            need_store = finished or not self._use_redis(state.job_id)
            while True:
                if need_store:
                    state.wake.clear()  # before reading: a signal from now on is not lost
                    for stored in await self.jobs.events(state.job_id, after_seq=state.seq):
                        state.seq = stored.pop("seq", state.seq)
                        event = _typed(stored)
                        if event is None:
                            continue
                        yield event
                        if is_terminal(event):
                            return
                    current = await get_record()
                    # ended without a stored final event
                    if current["status"] in TERMINAL_JOB_STATUSES:
                        yield terminal_of(current)
                        return
                batch = await self._next(state)
                need_store = batch is None
                for numbered in batch or ():
                    number = numbered.get("seq")
                    if not isinstance(number, int) or number <= state.seq:
                        continue  # already seen
                    if number != state.seq + 1:
                        need_store = state.gap = True  # missed some: the store has them
                        break
                    state.gap = False
                    state.seq = number
                    event = _typed(numbered)
                    if event is None:
                        continue
                    yield event
                    if is_terminal(event):
                        return
        finally:
            state.close()

    async def _next(self, state: _Follow) -> list[Event] | None:
        """New events, or None: read the store (a signal, silence, or Redis trouble)."""
        ready = state.drain()
        if ready:
            return ready
        if self._use_redis(state.job_id):
            return await self._read_stream(state)
        quiet = QUIET if self.signals.remote or self.is_local(state.job_id) else POLL
        getter = asyncio.ensure_future(state.queue.get())
        waker = asyncio.ensure_future(state.wake.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, waker}, timeout=quiet, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (getter, waker):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(getter, waker, return_exceptions=True)
        if getter in done and not getter.cancelled():
            return getter.result() + state.drain()
        return None

    async def _read_stream(self, state: _Follow) -> list[Event] | None:
        """The next entries of the job's stream; a database signal (the owner cannot reach
        Redis) interrupts the wait, leaving the read pending for the next call."""
        assert self.redis is not None
        if state.reading is None:
            key = self.redis.events_key(state.job_id)
            state.reading_started = time.monotonic()
            state.reading = asyncio.ensure_future(
                self.redis.client.xread({key: state.last_id}, count=1000, block=int(QUIET * 1000))
            )
        waker = asyncio.ensure_future(state.wake.wait())
        try:
            await asyncio.wait({state.reading, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
        if not state.reading.done():
            return None  # signalled: read the store
        reading, state.reading = state.reading, None
        try:
            reply = reading.result()
        except Exception as exc:
            self.redis.outage.failed(exc)
            return None
        self.redis.outage.ok(state.reading_started)
        if not reply:
            return None
        entries = [entry for _key, stream in reply for entry in stream]
        state.last_id = entries[-1][0] if entries else state.last_id
        if sum(len(fields.get("e") or "") for _id, fields in entries) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(_parsed, entries)  # e.g. megabytes of results
        return _parsed(entries)


def _parsed(entries: list[tuple[str, dict[str, str]]]) -> list[Event]:
    """Stream entries back to events (malformed ones skipped)."""
    return [event for _id, fields in entries if (event := parse_entry(fields)) is not None]
