"""Redis for tests: availability (`tests.support.needs`: a failure under CI=true, else a
skip) and a fresh key
prefix per module whose keys are deleted afterwards, so parallel runs never meet."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.needs import REDIS, missing

REDIS_URL = os.environ.get("NODETOOL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def require_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        missing(f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__}: {exc})", REDIS)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix nobody else uses; its keys are deleted on exit."""
    import redis.asyncio as aioredis

    await require_redis()
    prefix = f"nodetool-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = aioredis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
