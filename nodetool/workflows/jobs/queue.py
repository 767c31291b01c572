"""The job queue: a Redis Streams consumer group; without Redis, leases on the PostgreSQL
jobs table; on SQLite, an in-process queue.

A queue entry only names a job (`job_id`); the job itself is in the store. Workers `take`
new entries, `ack` an entry when its job ends, `keep` the entries they are running (which
resets their idle time or lease, and tells which ones another worker claimed meanwhile) and
`claim` entries whose worker stopped keeping them for `claim_idle` seconds (it crashed or
lost its connection): Redis's own `XREADGROUP`, `XACK`, `XCLAIM` and `XAUTOCLAIM`, or
PostgreSQL's `SELECT ... FOR UPDATE SKIP LOCKED` on rows whose lease is free or ran out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nodetool.workflows.jobs.redis_link import GROUP

if TYPE_CHECKING:
    from nodetool.storage.base import JobLeaseStore
    from nodetool.workflows.jobs.redis_link import RedisLink
    from nodetool.workflows.jobs.signals import Signals

KEEP_MIN_IDLE_MS = 300
QUEUE_CHANNEL = "nodetool_job_queued"  # Signals channel (no Redis): a job was queued


@dataclass(frozen=True)
class Delivery:
    job_id: str
    entry_id: str | None  # the stream entry (None: in-process queue)
    claimed: bool = False  # taken over from another worker


class JobQueue(Protocol):
    async def submit(self, job_id: str) -> None: ...

    async def take(self, count: int, block: float) -> list[Delivery]:
        """Up to `count` new deliveries, waiting at most `block` seconds for the first."""
        ...

    async def claim(self, count: int) -> list[Delivery]:
        """Up to `count` entries abandoned by other workers."""
        ...

    async def keep(self, entry_ids: list[str]) -> set[str]:
        """Refresh our running entries; returns those still ours."""
        ...

    async def ack(self, entry_id: str | None) -> None: ...


class LocalQueue:
    """Jobs run by the process that accepted them (no Redis)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    async def submit(self, job_id: str) -> None:
        self._queue.put_nowait(job_id)

    async def take(self, count: int, block: float) -> list[Delivery]:
        try:
            async with asyncio.timeout(block):
                first = await self._queue.get()
        except TimeoutError:
            return []
        taken = [Delivery(first, None)]
        while len(taken) < count and not self._queue.empty():
            taken.append(Delivery(self._queue.get_nowait(), None))
        return taken

    async def claim(self, count: int) -> list[Delivery]:
        return []

    def drain(self) -> list[str]:
        """The jobs still waiting (they die with this process)."""
        waiting: list[str] = []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        return waiting

    async def keep(self, entry_ids: list[str]) -> set[str]:
        return set(entry_ids)

    async def ack(self, entry_id: str | None) -> None:
        return None


class RedisQueue:
    """The `{prefix}:jobs` stream read by consumer group `workers`, one consumer per process."""

    def __init__(self, link: RedisLink, consumer: str, claim_idle: float) -> None:
        self.link = link
        self.redis: Any = link.client
        self.key = link.queue_key
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle * 1000)
        self._claim_cursor = "0-0"
        self._group_ready = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def submit(self, job_id: str) -> None:
        await self.redis.xadd(self.key, {"job_id": job_id})

    async def take(self, count: int, block: float) -> list[Delivery]:
        await self.ensure_group()
        try:
            reply = await self.redis.xreadgroup(
                GROUP, self.consumer, {self.key: ">"}, count=count, block=int(block * 1000)
            )
        except Exception as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted: create the group again
                self._group_ready = False
            raise
        return [
            Delivery(fields.get("job_id", ""), entry_id)
            for _key, entries in reply or ()
            for entry_id, fields in entries
        ]

    async def claim(self, count: int) -> list[Delivery]:
        await self.ensure_group()
        reply = await self.redis.xautoclaim(
            self.key, GROUP, self.consumer, self.claim_idle_ms, self._claim_cursor, count=count
        )
        cursor, entries = reply[0], reply[1]
        self._claim_cursor = cursor or "0-0"
        return [
            Delivery(fields.get("job_id", ""), entry_id, claimed=True)
            for entry_id, fields in entries
            if fields is not None
        ]

    async def keep(self, entry_ids: list[str]) -> set[str]:
        if not entry_ids:
            return set()
        pending = await self.redis.xpending_range(
            self.key,
            GROUP,
            min="-",
            max="+",
            count=max(100, 2 * len(entry_ids)),
            consumername=self.consumer,
        )
        mine = {item["message_id"] for item in pending} & set(entry_ids)
        if mine:  # reset their idle time so nobody claims them (never taking one back that
            # another worker claimed a moment ago: its idle time is still below KEEP_MIN_IDLE)
            await self.redis.xclaim(
                self.key, GROUP, self.consumer, KEEP_MIN_IDLE_MS, list(mine), justid=True
            )
        return mine

    async def ack(self, entry_id: str | None) -> None:
        if entry_id is None:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, GROUP, entry_id)
            pipe.xdel(self.key, entry_id)
            await pipe.execute()


class PostgresQueue:
    """The PostgreSQL jobs table as the queue (no Redis): a delivery is a lease on a job row.

    `submit` only wakes the consumers (`NOTIFY`): the stored `queued` row is the entry. Every
    consumer then tries to lease it (`SKIP LOCKED`: one wins); consumers also look every
    `block` seconds, so a missed wake-up delays a job, never loses it. The lease lasts
    `claim_idle` seconds and is renewed by `keep`; an expired one is `claim`ed by another
    process and the job re-run.
    """

    def __init__(
        self, leases: JobLeaseStore, signals: Signals, consumer: str, claim_idle: float
    ) -> None:
        self.leases = leases
        self.signals = signals
        self.consumer = consumer
        self.lease = claim_idle
        self._queued = asyncio.Event()
        signals.on(QUEUE_CHANNEL, lambda _payload: self._queued.set())

    async def submit(self, job_id: str) -> None:
        await self.signals.send(QUEUE_CHANNEL, job_id)

    async def take(self, count: int, block: float) -> list[Delivery]:
        self._queued.clear()  # before looking: a wake-up from now on is not lost
        taken = await self.leases.take(self.consumer, count, self.lease)
        if not taken:
            try:
                async with asyncio.timeout(block):
                    await self._queued.wait()
            except TimeoutError:
                pass
            self._queued.clear()
            taken = await self.leases.take(self.consumer, count, self.lease)
        return [Delivery(job_id, job_id) for job_id in taken]

    async def claim(self, count: int) -> list[Delivery]:
        claimed = await self.leases.claim(self.consumer, count, self.lease)
        return [Delivery(job_id, job_id, claimed=True) for job_id in claimed]

    async def keep(self, entry_ids: list[str]) -> set[str]:
        return await self.leases.renew(self.consumer, entry_ids, self.lease)

    async def ack(self, entry_id: str | None) -> None:
        return None  # the job's final status takes it off the queue
