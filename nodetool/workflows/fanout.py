"""Following and cancelling jobs across processes: a `JobBus` and the store-backed follower.

Workers sharing one database can follow and cancel each other's jobs. The owning process
publishes every stored job event (with the `seq` the store gave it) and listens for cancel
requests. Two buses exist:

- `InProcessJobBus` (no Redis): nothing travels between processes. A follower polls the
  store; the owner notices a store-side cancel with a light periodic check (see JobManager).
- `RedisJobBus`: events go out on `{prefix}:job:{job_id}` as JSON, cancel requests (the job
  id) on `{prefix}:job-cancel`. A follower subscribes first, then replays the store, then
  takes live events; the `seq` drops duplicates, and a gap or a quiet spell re-reads the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.storage.base import JobStore

log = logging.getLogger(__name__)

FINISHED = ("completed", "failed", "cancelled")
POLL_INTERVAL = 0.25  # following a job run by another process, without Redis
IDLE_CHECK = 5.0  # seconds of bus silence before a follower re-reads the store
PREFIX = "nodetool"

Event = dict[str, Any]


def is_terminal(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "job_update" and event.get("status") in FINISHED


def terminal_of(record: Mapping[str, Any]) -> Event:
    """The final `job_update` of a finished job record (when no stored event says it)."""
    event: Event = {
        "type": "job_update",
        "status": record["status"],
        "job_id": record["id"],
        "workflow_id": record.get("workflow_id"),
    }
    if record["status"] == "completed":
        event["result"] = record.get("results")
    else:
        event["error"] = record.get("error")
    return event


class Feed(Protocol):
    """Live events of one job from the bus."""

    async def get(self, timeout: float) -> Event | None:
        """The next event, or None after `timeout` seconds without one."""
        ...


class JobBus(Protocol):
    """How job events and cancel requests travel between processes."""

    remote: bool  # False: followers poll the store, owners check it for cancels
    idle_check: float

    async def publish(self, job_id: str, events: list[Event]) -> None:
        """Send stored events (each carrying its `seq`) to followers anywhere."""
        ...

    async def listen_cancels(self, on_cancel: Callable[[str], None]) -> None:
        """Call `on_cancel(job_id)` for cancel requests; returns once listening. Idempotent."""
        ...

    async def request_cancel(self, job_id: str) -> None: ...

    def feed(self, job_id: str) -> Any:
        """An async context manager giving a `Feed`, subscribed when entered."""
        ...

    async def aclose(self) -> None: ...


class InProcessJobBus:
    """No fan-out: everything a follower elsewhere needs comes from the store."""

    remote = False
    idle_check = IDLE_CHECK

    async def publish(self, job_id: str, events: list[Event]) -> None:
        return None

    async def listen_cancels(self, on_cancel: Callable[[str], None]) -> None:
        return None

    async def request_cancel(self, job_id: str) -> None:
        return None

    def feed(self, job_id: str) -> Any:
        raise NotImplementedError("the in-process bus has no live feed; poll the store")

    async def aclose(self) -> None:
        return None


class _RedisFeed:
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def get(self, timeout: float) -> Event | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=remaining
            )
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except ValueError:
                log.warning("dropped a malformed job event from Redis")
                continue
            if isinstance(event, dict):
                return event
        return None


class RedisJobBus:
    """Fan-out through Redis pub/sub (`redis.asyncio`, imported here only)."""

    remote = True

    def __init__(self, url: str, *, prefix: str = PREFIX, idle_check: float = IDLE_CHECK):
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.idle_check = idle_check
        self.cancel_channel = f"{prefix}:job-cancel"
        self._listening: asyncio.Future[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    def channel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    async def publish(self, job_id: str, events: list[Event]) -> None:
        if not events:
            return
        channel = self.channel(job_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(channel, json.dumps(event, separators=(",", ":"), default=str))
            await pipe.execute()

    async def request_cancel(self, job_id: str) -> None:
        await self._redis.publish(self.cancel_channel, job_id)

    async def listen_cancels(self, on_cancel: Callable[[str], None]) -> None:
        if self._listening is None or (
            self._listening.done() and self._listening.exception() is not None
        ):
            self._listening = asyncio.ensure_future(self._start_listener(on_cancel))
        await asyncio.shield(self._listening)

    async def _start_listener(self, on_cancel: Callable[[str], None]) -> None:
        pubsub = await self._subscribed(self.cancel_channel)
        self._listener = asyncio.create_task(self._listen(pubsub, on_cancel))

    async def _listen(self, pubsub: Any, on_cancel: Callable[[str], None]) -> None:
        try:
            while True:
                try:
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            on_cancel(str(message["data"]))
                    raise ConnectionError("subscription ended")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis went away: resubscribe when it is back
                    log.warning("job cancel listener lost Redis (%s); retrying", exc)
                    await pubsub.aclose()
                    await asyncio.sleep(1.0)
                    pubsub = self._redis.pubsub()
                    with contextlib.suppress(Exception):  # else `listen()` ends: retry
                        await pubsub.subscribe(self.cancel_channel)
        finally:
            await pubsub.aclose()

    async def _subscribed(self, channel: str) -> Any:
        """A PubSub whose subscription Redis has confirmed (no message can slip by after)."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            async with asyncio.timeout(10):
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "subscribe":
                        return pubsub
        except BaseException:
            await pubsub.aclose()
            raise

    @asynccontextmanager
    async def feed(self, job_id: str) -> AsyncIterator[Feed]:
        pubsub = await self._subscribed(self.channel(job_id))
        try:
            yield _RedisFeed(pubsub)
        finally:
            await pubsub.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._redis.aclose()


def make_bus(settings: Settings) -> JobBus:
    """Redis when `redis_url` is set, else the in-process bus."""
    if settings.redis_url:
        return RedisJobBus(settings.redis_url)
    return InProcessJobBus()


async def follow_job(
    jobs: JobStore,
    job_id: str,
    get_record: Callable[[], Awaitable[Mapping[str, Any]]],
    feed: Feed | None,
    idle_check: float = IDLE_CHECK,
) -> AsyncIterator[Event]:
    """A job's stored events, then new ones (from `feed`, else by polling) until it ends.

    With a feed, subscribe before calling this: the replay then overlaps the live events and
    `seq` drops what was already replayed; a gap or `idle_check` seconds of silence
    re-read the store (which also ends the follow of a job whose owner died).
    """
    seq = 0
    while True:
        record = await get_record()
        for event in await jobs.events(job_id, after_seq=seq):
            seq = event.pop("seq", seq)
            yield event
            if is_terminal(event):
                return
        if record["status"] in FINISHED:  # finished without a stored terminal event
            yield terminal_of(record)
            return
        if feed is None:
            await asyncio.sleep(POLL_INTERVAL)
            continue
        while (event := await feed.get(idle_check)) is not None:
            number = event.pop("seq", None)
            if not isinstance(number, int) or number <= seq:
                continue  # already replayed
            if number != seq + 1:
                break  # missed one: catch up from the store
            seq = number
            yield event
            if is_terminal(event):
                return
