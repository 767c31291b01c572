"""The process's Redis connection for jobs, and how an outage is reported and retried.

Keys (all under `NODETOOL_REDIS_PREFIX`, default `nodetool`):

- `{prefix}:jobs`: the job queue stream (entries `{job_id}`), consumer group `workers`.
- `{prefix}:job:{job_id}:events`: a job's stored events (`{seq, e}`), expiring
  `EVENTS_TTL` seconds after the job's final event was stored.
- `{prefix}:control`: pub/sub channel for control messages (`cancel:{job_id}`).

An outage is logged once (one warning line when it starts, one info line when Redis is back);
while it lasts, callers skip Redis until the next retry time (exponential backoff, at most
`MAX_BACKOFF` seconds) and fall back as docs/jobs.md describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nodetool.storage.large_json import encode_in_pieces, json_is_large

log = logging.getLogger("nodetool.jobs.redis")

GROUP = "workers"
EVENTS_TTL = 60  # seconds a finished job's event stream is kept (it is in the store)
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0


class Outage:
    """Tracks whether Redis is reachable: one log line per outage, a backoff schedule."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failures = 0
        self.retry_at = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def may_try(self) -> bool:
        return self.since is None or time.monotonic() >= self.retry_at

    def failed(self, exc: BaseException) -> float:
        """Record a failed call; returns how long to wait before the next try."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            log.warning(
                "Redis unreachable (%s: %s); new jobs run where they are submitted and "
                "followers read the database until it is back",
                type(exc).__name__,
                exc,
            )
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(self.failures, 8))
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def ok(self, started: float) -> None:
        """A call begun at `started` (time.monotonic()) succeeded; a call begun before the
        outage was noticed proves nothing (it may have been answered just before)."""
        if self.since is not None and started < self.since:
            return
        if self.since is not None:
            log.info("Redis reachable again after %.1f s", time.monotonic() - self.since)
        self.since = None
        self.failures = 0


class RedisLink:
    """One `redis.asyncio` client (imported here only), the key names and the outage state."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client: Any = aioredis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=10,  # above every BLOCK we use
            retry=Retry(NoBackoff(), 0),  # our own loops retry, with backoff
        )
        self.prefix = prefix
        self.outage = Outage()
        self.queue_key = f"{prefix}:jobs"
        self.control_channel = f"{prefix}:control"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    async def add_events(self, job_id: str, events: list[dict[str, Any]], *, final: bool) -> bool:
        """Append stored events to the job's stream; False when Redis cannot take them."""
        if not self.outage.may_try():
            return False
        key = self.events_key(job_id)
        if json_is_large(events):  # e.g. a final event carrying megabytes of results
            texts = await asyncio.to_thread(_bodies, events)
        else:
            texts = _bodies(events)
        started = time.monotonic()
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for event, text in zip(events, texts, strict=True):
                    pipe.xadd(key, {"seq": event["seq"], "e": text})
                if final:
                    pipe.expire(key, EVENTS_TTL)
                await pipe.execute()
        except Exception as exc:
            self.outage.failed(exc)
            return False
        self.outage.ok(started)
        return True

    async def last_seq(self, job_id: str) -> int:
        """The `seq` of the job stream's last entry (0 if none or Redis is away)."""
        if not self.outage.may_try():
            return 0
        started = time.monotonic()
        try:
            entries = await self.client.xrevrange(self.events_key(job_id), count=1)
        except Exception as exc:
            self.outage.failed(exc)
            return 0
        self.outage.ok(started)
        for _entry_id, fields in entries:
            try:
                return int(fields.get("seq", 0))
            except ValueError:
                return 0
        return 0

    async def publish_control(self, message: str) -> bool:
        if not self.outage.may_try():
            return False
        started = time.monotonic()
        try:
            await self.client.publish(self.control_channel, message)
        except Exception as exc:
            self.outage.failed(exc)
            return False
        self.outage.ok(started)
        return True

    async def listen_control(self, on_message: Callable[[str], None]) -> None:
        """Call `on_message` for each control message, forever; resubscribes after outages."""
        while True:
            pubsub = self.client.pubsub()
            started = time.monotonic()
            try:
                await pubsub.subscribe(self.control_channel)
                self.outage.ok(started)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is not None and message.get("type") == "message":
                        on_message(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.outage.failed(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.client.aclose()


def _bodies(events: list[dict[str, Any]]) -> list[str]:
    """Each event's JSON without its `seq` (the stream entry keeps that apart)."""
    return [encode_in_pieces({k: v for k, v in e.items() if k != "seq"}, str) for e in events]


def parse_entry(fields: dict[str, str]) -> dict[str, Any] | None:
    """A stream entry back to an event with its `seq` (None if malformed)."""
    try:
        event = json.loads(fields["e"])
        seq = int(fields["seq"])
    except (KeyError, ValueError, TypeError):
        return None
    if not isinstance(event, dict):
        return None
    event["seq"] = seq
    return event
