"""Job managers sharing one PostgreSQL database (each with its own store connection, like
separate processes): without Redis, jobs leased from the jobs table by either, followed and
cancelled from the other through LISTEN/NOTIFY; on Redis,
a lost worker's job claimed by another, attempts limited per workflow, with a stored final
event; Redis outages reported once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.storage import open_store
from nodetool.workflows.jobs import JobManager, follow
from nodetool.workflows.jobs.redis_link import GROUP, Outage
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.storage import temp_postgres_database
from tests.support.workflows import GATES, gate_graph, wire

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres]

WAIT = 30.0  # bound for anything awaited (never a timing assertion)


@pytest.fixture(scope="module")
async def settings(tmp_path_factory) -> AsyncIterator[Settings]:
    async with temp_postgres_database() as url:
        data = tmp_path_factory.mktemp("queue")
        yield Settings(data_dir=data, database_url=url, redis_url=None, _env_file=None)


@pytest.fixture(scope="module")
async def stores(settings) -> AsyncIterator[tuple[Any, Any]]:
    first, second = await open_store(settings), await open_store(settings)
    yield first, second
    await first.close()
    await second.close()


async def managers(settings: Settings, stores: tuple[Any, Any]) -> tuple[JobManager, JobManager]:
    a, b = (JobManager(settings, store, None) for store in stores)
    await a.start()
    await b.start()
    return a, b


def open_gate(name: str) -> None:
    GATES.setdefault(name, threading.Event()).set()


async def gate_running(manager: JobManager, user: str, job_id: str) -> list[dict[str, Any]]:
    seen = []
    async for event in wire(manager.subscribe(user, job_id)):
        seen.append(event)
        if event.get("node_id") == "g" and event.get("status") == "running":
            return seen
    raise AssertionError(f"job ended first: {seen}")


async def runner_of(managers: tuple[JobManager, ...], job_id: str) -> JobManager:
    """The manager whose runner took the job (without Redis: whoever leased it first)."""
    async with asyncio.timeout(WAIT):
        while True:
            for manager in managers:
                if job_id in manager.runner.running:
                    return manager
            await asyncio.sleep(0.005)


async def test_without_redis_followers_and_cancels_travel_by_notify(
    settings, stores, monkeypatch
) -> None:
    monkeypatch.setattr(follow, "QUIET", 3600.0)  # live events must come by NOTIFY, not polls
    a, b = await managers(settings, stores)
    gate, stuck = f"notify-{uuid.uuid4().hex}", f"stuck-{uuid.uuid4().hex}"
    try:
        job = await a.start_job("u1", graph=gate_graph(gate), params={"text": "hi"})
        other = b if await runner_of((a, b), job["id"]) is a else a
        async with asyncio.timeout(WAIT):
            replay = await gate_running(other, "u1", job["id"])
            stream = wire(other.subscribe("u1", job["id"]))
            open_gate(gate)
            followed = [event async for event in stream]
        statuses = [(e["status"], e["attempt"]) for e in followed if e["type"] == "job_update"]
        assert statuses == [("queued", 0), ("running", 1), ("completed", 1)]
        assert followed[: len(replay)] == replay and followed[-1]["result"] == {"echo": "hi"}

        job = await a.start_job("u1", graph=gate_graph(stuck), params={"text": "x"})
        owner = await runner_of((a, b), job["id"])
        other = b if owner is a else a
        async with asyncio.timeout(WAIT):
            await gate_running(other, "u1", job["id"])
            answer = await other.cancel("u1", job["id"])  # the NOTIFY reaches the owner
        assert answer["status"] == "cancelled"  # confirmed by the owner's final event
        async with asyncio.timeout(WAIT):  # the owner's run ends (its final event is out)
            while owner.runner.running:
                await asyncio.sleep(0.01)
        events = await stores[1].jobs.events(job["id"])
        assert events[-1]["status"] == "cancelled" and events[-1]["attempt"] == 1
    finally:
        open_gate(gate)
        open_gate(stuck)
        await a.aclose()
        await b.aclose()


async def test_a_cancel_that_is_not_confirmed_says_so(settings, stores, monkeypatch) -> None:
    monkeypatch.setattr("nodetool.workflows.jobs.manager.CANCEL_WAIT", 0.2)
    store = stores[0]
    job = await store.jobs.create("u2", None, {}, graph=gate_graph("ghost"))
    await store.jobs.begin_attempt(job["id"], "a-worker-that-does-not-answer")
    a, b = await managers(settings, stores)
    try:
        answer = await a.cancel("u2", job["id"])
        assert answer["status"] == "cancel_requested"
        assert (await a.get("u2", job["id"]))["status"] == "running"
    finally:
        await a.aclose()
        await b.aclose()


async def test_lost_workers_jobs_are_claimed_and_attempts_are_limited(
    settings, stores, monkeypatch
) -> None:
    async with redis_prefix() as prefix:
        on_redis = settings.model_copy(
            update={"redis_url": REDIS_URL, "redis_prefix": prefix, "job_claim_idle": 0.5}
        )
        store = stores[0]
        await store.workflows.upsert(
            "u3", {"id": "once", "name": "Once", "graph": gate_graph("once"), "max_attempts": 1}
        )
        a = JobManager(on_redis, store, None)
        ghost = await _ghost_takes(a, "u3", workflow_id="once")  # runs nothing, dies
        retried = await _ghost_takes(a, "u3", graph=gate_graph("again"), params={"text": "ok"})
        await a.start()
        try:
            open_gate("again")
            async with asyncio.timeout(WAIT):
                failed = [e async for e in wire(a.subscribe("u3", ghost))]
                completed = [e async for e in wire(a.subscribe("u3", retried))]
            assert failed[-1] == {
                "type": "job_update",
                "status": "failed",
                "job_id": ghost,
                "workflow_id": "once",
                "attempt": 2,
                "error": "worker lost; gave up after 1 attempt(s)",
            }
            assert (await store.jobs.events(ghost))[-1] == {**failed[-1], "seq": 2}
            updates = [(e["status"], e["attempt"]) for e in completed if e["type"] == "job_update"]
            assert updates == [("queued", 0), ("running", 2), ("completed", 2)]
            record = await a.get("u3", retried)
            assert (record["attempt"], record["max_attempts"], record["status"]) == (
                2,
                2,
                "completed",
            )
        finally:
            await a.aclose()


async def _ghost_takes(manager: JobManager, user: str, **job: Any) -> str:
    """Submit a job that a worker (consumer `ghost`) takes and starts, then dies with."""
    record = await manager.start_job(user, **job)
    redis = manager.redis
    assert redis is not None
    await manager.queue.ensure_group()  # type: ignore[attr-defined]
    await redis.client.xreadgroup(GROUP, "ghost", {redis.queue_key: ">"}, count=1)
    await manager.store.jobs.begin_attempt(record["id"], "ghost")
    return record["id"]


async def test_a_redis_outage_is_one_warning(caplog) -> None:
    outage = Outage()
    with caplog.at_level(logging.INFO, logger="nodetool.jobs.redis"):
        delays = [outage.failed(ConnectionError("refused")) for _ in range(12)]
        outage.ok(0.0)  # a call begun before the outage proves nothing: still one outage
        outage.failed(ConnectionError("still refused"))
        outage.ok(time.monotonic())
        outage.failed(ConnectionError("refused again"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(";")[0] for r in warnings] == [
        "Redis unreachable (ConnectionError: refused)",
        "Redis unreachable (ConnectionError: refused again)",
    ]
    assert all(r.exc_info is None for r in caplog.records)  # no tracebacks
    assert delays == sorted(delays) and delays[0] < 1 and delays[-1] == 5.0  # backoff, capped
    assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_leases_are_taken_once_and_claimed_when_they_run_out(stores) -> None:
    """Without Redis the jobs table is the queue: concurrent takers never share a job; a
    running job's lease that runs out is claimed by another process, ending the first's."""
    first, second = (store.job_leases for store in stores)
    assert first.supported
    mine = set()
    for _ in range(6):
        mine.add((await stores[0].jobs.create("u9", None, {}, graph=gate_graph("lease")))["id"])
    took_a, took_b = await asyncio.gather(first.take("A", 100, 30), second.take("B", 100, 30))
    assert mine <= set(took_a) | set(took_b) and not set(took_a) & set(took_b)
    assert not mine & set(await first.take("C", 100, 30))  # leased: nobody else takes them

    job = (await stores[0].jobs.create("u9", None, {}, graph=gate_graph("lease")))["id"]
    assert job in await first.take("A", 100, 0.3)
    assert (await stores[0].jobs.begin_attempt(job, "A")) is not None
    assert await first.renew("A", [job], 0.3) == {job}
    assert job not in await second.claim("B", 100, 30)  # the lease is alive
    await asyncio.sleep(0.5)  # A stops renewing: its lease runs out
    assert job in await second.claim("B", 100, 30)
    assert await first.renew("A", [job], 30) == set()  # A learns the job is no longer its
    assert job not in await first.claim("A", 100, 30)  # B's lease is alive
