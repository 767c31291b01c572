"""Jobs across processes: two JobManagers, each with its own store connection to one PostgreSQL
database, following and cancelling each other's jobs through Redis, and without Redis."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import WorkflowError
from nodetool.storage import open_store
from nodetool.workflows.fanout import InProcessJobBus, RedisJobBus
from nodetool.workflows.jobs import JobManager
from tests.support.needs import REDIS, missing
from tests.support.storage import temp_postgres_database
from tests.support.workflows import GATES, gate_graph

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres]

REDIS_URL = "redis://127.0.0.1:6379/0"
ENSURE = Path(__file__).resolve().parents[1] / "scripts" / "ensure_services.sh"
WAIT = 30.0  # upper bound for anything the tests wait for (never a timing assertion)
NEVER = 3600.0  # a follower that loses Redis events would hang, not quietly re-read the store


async def _redis_problem() -> str | None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


@pytest.fixture(scope="module")
async def redis_url() -> str:
    problem = await _redis_problem()
    if problem is not None and ENSURE.exists():
        await asyncio.to_thread(subprocess.run, ["bash", str(ENSURE)], capture_output=True)
        for _ in range(20):
            if (problem := await _redis_problem()) is None:
                break
            await asyncio.sleep(0.25)
    if problem is not None:
        missing(f"Redis at {REDIS_URL} is not reachable ({problem})", REDIS)
    return REDIS_URL


@pytest.fixture(scope="module")
async def settings(tmp_path_factory) -> AsyncIterator[Settings]:
    async with temp_postgres_database() as url:
        data = tmp_path_factory.mktemp("fanout")
        yield Settings(data_dir=data, database_url=url, redis_url=None, _env_file=None)


@pytest.fixture(scope="module")
async def stores(settings) -> AsyncIterator[tuple[Any, Any]]:
    """Two separate connections to one database: the stores of two worker processes."""
    first, second = await open_store(settings), await open_store(settings)
    yield first, second
    await first.close()
    await second.close()


async def until(check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    async with asyncio.timeout(WAIT):
        while not (result := await check()):
            await asyncio.sleep(0.02)
    return result


def open_gate(name: str) -> None:
    GATES.setdefault(name, threading.Event()).set()


async def started_on(manager: JobManager, user: str, gate: str) -> tuple[asyncio.Task, str]:
    """A job run to completion on `manager` (in a task) whose gate node is now running."""
    task = asyncio.create_task(
        manager.run_to_completion(user, graph=gate_graph(gate), params={"text": "hi"})
    )

    async def running() -> str | None:
        jobs = manager.running(user)
        return jobs[0]["job_id"] if jobs and jobs[0]["status"] == "running" else None

    job_id = await until(running)
    store = manager.store

    async def gate_running() -> bool:
        return any(
            e.get("node_id") == "g" and e.get("status") == "running"
            for e in await store.jobs.events(job_id)
        )

    await until(gate_running)
    return task, job_id


def without_seq(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seq"} for e in events]


async def test_a_job_on_one_worker_is_followed_live_from_another(
    settings, stores, redis_url
) -> None:
    store_a, store_b = stores
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    worker_a = JobManager(with_redis, store_a, None)  # the bus comes from `redis_url`
    worker_b = JobManager(with_redis, store_b, None)
    assert isinstance(worker_b.bus, RedisJobBus)
    worker_b.bus.idle_check = NEVER  # live events must come through Redis
    gate = f"follow-{uuid.uuid4().hex}"
    try:
        task, job_id = await started_on(worker_a, "u1", gate)
        followed: list[dict[str, Any]] = []
        stream = worker_b.subscribe("u1", job_id)
        async with asyncio.timeout(WAIT):
            async for event in stream:  # the replay, up to the waiting gate node
                followed.append(event)
                if event.get("node_id") == "g" and event.get("status") == "running":
                    break
            replayed = len(followed)
            open_gate(gate)
            async for event in stream:  # live from here on
                followed.append(event)
        assert await task == {"echo": "hi"}
        statuses = [e["status"] for e in followed if e["type"] == "job_update"]
        assert statuses == ["queued", "running", "completed"]
        assert followed[-1]["result"] == {"echo": "hi"}
        assert len(followed) > replayed
        # no gaps, no duplicates: exactly what the owner stored
        assert followed == without_seq(await store_b.jobs.events(job_id))
    finally:
        open_gate(gate)
        await worker_a.aclose()
        await worker_b.aclose()


async def test_cancel_on_another_worker_stops_the_run_through_redis(
    settings, stores, redis_url
) -> None:
    url = redis_url
    store_a, store_b = stores
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    worker_a = JobManager(settings, store_a, None, bus=RedisJobBus(url, prefix=prefix))
    worker_b = JobManager(settings, store_b, None, bus=RedisJobBus(url, prefix=prefix))
    gate = f"cancel-{uuid.uuid4().hex}"
    try:
        task, job_id = await started_on(worker_a, "u2", gate)
        record = await worker_b.cancel("u2", job_id)
        assert record["status"] == "cancelled"
        with pytest.raises(WorkflowError) as info:
            async with asyncio.timeout(WAIT):
                await task  # A's run was stopped, not left running
        assert info.value.message == "cancelled"
        assert worker_a.running("u2") == []
        final = await store_a.jobs.get("u2", job_id)
        assert final["status"] == "cancelled" and final["error"] == "cancelled"
        events = await store_b.jobs.events(job_id)
        assert events[-1]["status"] == "cancelled"
        assert not any(e.get("node_id") == "out" for e in events)
    finally:
        open_gate(gate)
        await worker_a.aclose()
        await worker_b.aclose()


async def test_without_redis_a_stored_cancel_stops_the_run_and_stands(settings, stores) -> None:
    store_a, store_b = stores
    worker_a = JobManager(settings, store_a, None)
    worker_b = JobManager(settings, store_b, None)
    assert isinstance(worker_a.bus, InProcessJobBus)
    stuck, racing = f"stuck-{uuid.uuid4().hex}", f"racing-{uuid.uuid4().hex}"
    try:
        # the gate stays shut: A notices the stored cancel and stops its run
        task, job_id = await started_on(worker_a, "u3", stuck)
        assert (await worker_b.cancel("u3", job_id))["status"] == "cancelled"
        with pytest.raises(WorkflowError) as info:
            async with asyncio.timeout(WAIT):
                await task
        assert info.value.message == "cancelled"
        assert (await store_a.jobs.get("u3", job_id))["status"] == "cancelled"
        assert (await store_b.jobs.events(job_id))[-1]["status"] == "cancelled"

        # the run completes right after the cancel: its completion does not overwrite it
        task, job_id = await started_on(worker_a, "u3", racing)
        await worker_b.cancel("u3", job_id)
        open_gate(racing)
        with pytest.raises(WorkflowError) as info:
            async with asyncio.timeout(WAIT):
                await task
        assert info.value.message == "cancelled"
        record = await store_a.jobs.get("u3", job_id)
        assert record["status"] == "cancelled" and record["results"] is None
        followed = [e async for e in worker_b.subscribe("u3", job_id)]
        assert followed[-1]["status"] == "cancelled"
        assert [e["status"] for e in followed if e["type"] == "job_update"][-1] == "cancelled"
    finally:
        open_gate(stuck)
        open_gate(racing)
        await worker_a.aclose()
        await worker_b.aclose()


async def test_a_finished_job_is_final_in_the_store(stores) -> None:
    store_a, store_b = stores
    job = await store_a.jobs.create("u4", None, {})
    await store_a.jobs.update(job["id"], status="running")
    await store_b.jobs.update(job["id"], status="cancelled", error="cancelled")
    kept = await store_a.jobs.update(job["id"], status="completed", results={"echo": "x"})
    assert kept["status"] == "cancelled" and kept["results"] is None
    assert (await store_b.jobs.get("u4", job["id"]))["status"] == "cancelled"
