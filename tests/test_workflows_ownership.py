"""Job ownership across workers sharing one database (SQLite and PostgreSQL): a starting
manager fails only orphaned jobs (no owner, a dead process on this host, a stale heartbeat),
never jobs that live workers are running; a running manager beats and sweeps."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from nodetool.config import Settings
from nodetool.storage import Store, open_store
from nodetool.storage.schema import jobs as jobs_table
from nodetool.workflows import jobs as jobs_module
from nodetool.workflows.jobs import JobManager
from nodetool.workflows.ownership import owner_alive
from tests.support.storage import BACKENDS, backend_settings
from tests.support.workflows import GATES, gate_graph

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOST = socket.gethostname()
REMOTE = "elsewhere.invalid"


@pytest.fixture(scope="module", params=BACKENDS)
async def settings(request, tmp_path_factory) -> AsyncIterator[Settings]:
    async with backend_settings(request.param, tmp_path_factory.mktemp("owners")) as value:
        yield value


@pytest.fixture(scope="module")
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await open_store(settings)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def live_pid() -> Iterator[int]:
    """A real process on this host that stays alive until the module ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield proc.pid
    proc.stdin.close()
    proc.wait(timeout=30)


def dead_pid() -> int:
    """The pid of a process that ran, exited and was reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def running_job(store: Store, user_id: str, owner: str | None) -> dict[str, Any]:
    job = await store.jobs.create(user_id, None, {}, graph=gate_graph("unused"), owner=owner)
    return await store.jobs.update(job["id"], status="running")


async def age_heartbeat(store: Store, job_id: str, seconds: float = 3600) -> None:
    old = datetime.now(UTC) - timedelta(seconds=seconds)
    async with store.db.write() as conn:
        await conn.execute(
            jobs_table.update().where(jobs_table.c.id == job_id).values(heartbeat_at=old)
        )


async def heartbeat_of(store: Store, job_id: str) -> datetime:
    async with store.db.read() as conn:
        query = select(jobs_table.c.heartbeat_at).where(jobs_table.c.id == job_id)
        value = (await conn.execute(query)).scalar_one()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def started(manager: JobManager, user_id: str, gate: str) -> dict[str, Any]:
    """Start a gate job and wait until its gate node runs."""
    job = await manager.start_job(user_id, graph=gate_graph(gate), params={"text": "hi"})
    stream = manager.subscribe(user_id, job["id"])
    async for event in stream:
        if event.get("node_id") == "g" and event.get("status") == "running":
            break
    await stream.aclose()
    return job


async def test_startup_fails_only_orphaned_jobs(settings, store, live_pid) -> None:
    me = user()
    gate = f"owners-{uuid.uuid4().hex[:8]}"
    worker = JobManager(settings, store, None)  # another live worker, in this process
    await worker.start()
    in_process = await started(worker, me, gate)
    await age_heartbeat(store, in_process["id"])  # its process lives: the age does not matter
    jobs = {
        "other_live_process": await running_job(store, me, f"{HOST}:{live_pid}:a1b2c3d4"),
        "remote_fresh": await running_job(store, me, f"{REMOTE}:42:a1b2c3d4"),
        "dead_process": await running_job(store, me, f"{HOST}:{dead_pid()}:a1b2c3d4"),
        "earlier_self": await running_job(store, me, f"{HOST}:{os.getpid()}:0ldst4rt"),
        "remote_stale": await running_job(store, me, f"{REMOTE}:43:a1b2c3d4"),
        "unowned": await running_job(store, me, None),
    }
    await age_heartbeat(store, jobs["remote_stale"]["id"])

    restarted = JobManager(settings, store, None)
    await restarted.start()
    try:
        found = {name: await restarted.get(me, job["id"]) for name, job in jobs.items()}
        assert {name: job["status"] for name, job in found.items()} == {
            "other_live_process": "running",
            "remote_fresh": "running",
            "dead_process": "failed",
            "earlier_self": "failed",
            "remote_stale": "failed",
            "unowned": "failed",
        }
        assert {found[n]["error"] for n in ("dead_process", "remote_stale", "unowned")} == {
            "server restarted"
        }
        assert (await restarted.get(me, in_process["id"]))["status"] == "running"
        GATES.setdefault(gate, threading.Event()).set()
        events = [event async for event in worker.subscribe(me, in_process["id"])]
        assert events[-1]["status"] == "completed" and events[-1]["result"] == {"echo": "hi"}
    finally:
        GATES.setdefault(gate, threading.Event()).set()
        await restarted.aclose()
        await worker.aclose()


async def test_running_manager_beats_for_its_jobs_and_sweeps_lost_workers(
    settings, store, monkeypatch
) -> None:
    monkeypatch.setattr(jobs_module, "HEARTBEAT_EVERY", 0.01)
    monkeypatch.setattr(jobs_module, "SWEEP_EVERY", 0.0)
    me = user()
    gate = f"beat-{uuid.uuid4().hex[:8]}"
    manager = JobManager(settings, store, None)
    await manager.start()
    try:
        own = await started(manager, me, gate)
        await age_heartbeat(store, own["id"])
        aged = await heartbeat_of(store, own["id"])
        lost = await running_job(store, me, f"{REMOTE}:44:a1b2c3d4")
        await age_heartbeat(store, lost["id"])

        async def settled() -> None:
            while (
                await heartbeat_of(store, own["id"]) <= aged
                or (await manager.get(me, lost["id"]))["status"] != "failed"
            ):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(settled(), timeout=30)
        assert (await manager.get(me, lost["id"]))["error"] == "worker lost"
        assert (await manager.get(me, own["id"]))["status"] == "running"
    finally:
        GATES.setdefault(gate, threading.Event()).set()
        await manager.aclose()


async def test_closed_managers_jobs_count_as_orphaned_in_this_process(settings, store) -> None:
    me = user()
    closed = JobManager(settings, store, None)
    await closed.aclose()
    job = await running_job(store, me, closed.owner)
    assert owner_alive(closed.owner) is False
    fresh = JobManager(settings, store, None)
    await fresh.start()
    try:
        assert (await fresh.get(me, job["id"]))["status"] == "failed"
    finally:
        await fresh.aclose()


async def test_owner_alive_judges_only_this_host(live_pid) -> None:
    assert owner_alive(f"{HOST}:{live_pid}:x") is True
    assert owner_alive(f"{HOST}:{dead_pid()}:x") is False
    assert owner_alive(f"{REMOTE}:1:x") is True  # unknown: its heartbeat decides
    for bad in (f"{HOST}:0:x", f"{HOST}:-1:x", f"{HOST}:pid:x", "no-colons"):
        assert owner_alive(bad) is False
    manager_owner = f"{HOST}:{os.getpid()}:x"
    assert owner_alive(manager_owner) is False  # this process, but no such manager
