"""Typed job events and their one wire shape (docs/protocol.md §6): typed -> wire dict ->
stored (and handed to live followers) -> replayed typed, on the real SQLite store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.storage import open_store
from nodetool.types.jobs import (
    JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    UNFINISHED_JOB_STATUSES,
    JobEvent,
    JobUpdate,
    NodeProgress,
    NodeUpdate,
    OutputUpdate,
    from_wire,
    is_terminal,
    to_wire,
)
from nodetool.workflows.jobs import JobManager
from nodetool.workflows.jobs.events import EventLog

module_loop = pytest.mark.asyncio(loop_scope="module")  # the store lives on the module's loop

# every variant with its wire dict, keys in the order they have always been sent
CASES: list[tuple[JobEvent, dict[str, Any]]] = [
    (
        JobUpdate("j", "w", "queued", 0),
        {"type": "job_update", "status": "queued", "job_id": "j", "workflow_id": "w", "attempt": 0},
    ),
    (
        JobUpdate("j", None, "running", 1),
        {
            "type": "job_update",
            "status": "running",
            "job_id": "j",
            "workflow_id": None,
            "attempt": 1,
        },
    ),
    (
        JobUpdate("j", "w", "completed", 1, result={"out": [1, "two"]}),
        {
            "type": "job_update",
            "status": "completed",
            "job_id": "j",
            "workflow_id": "w",
            "attempt": 1,
            "result": {"out": [1, "two"]},
        },
    ),
    (
        JobUpdate("j", "w", "failed", 2, error="node 'd' failed"),
        {
            "type": "job_update",
            "status": "failed",
            "job_id": "j",
            "workflow_id": "w",
            "attempt": 2,
            "error": "node 'd' failed",
        },
    ),
    (
        JobUpdate("j", "w", "cancelled", 0, error=None),  # an error key even when unknown
        {
            "type": "job_update",
            "status": "cancelled",
            "job_id": "j",
            "workflow_id": "w",
            "attempt": 0,
            "error": None,
        },
    ),
    (
        NodeUpdate("j", "w", "n1", "nodetool.math.Add", "running"),
        {
            "type": "node_update",
            "job_id": "j",
            "workflow_id": "w",
            "node_id": "n1",
            "node_type": "nodetool.math.Add",
            "status": "running",
        },
    ),
    (
        NodeUpdate("j", "w", "n1", "nodetool.math.Divide", "error", "division by zero"),
        {
            "type": "node_update",
            "job_id": "j",
            "workflow_id": "w",
            "node_id": "n1",
            "node_type": "nodetool.math.Divide",
            "status": "error",
            "error": "division by zero",
        },
    ),
    (
        NodeProgress("j", "w", "each", 3, 10),
        {
            "type": "node_progress",
            "job_id": "j",
            "workflow_id": "w",
            "node_id": "each",
            "progress": 3,
            "total": 10,
        },
    ),
    (
        OutputUpdate("j", None, "out", "answer", {"nested": ["ü", None]}),
        {
            "type": "output_update",
            "job_id": "j",
            "workflow_id": None,
            "node_id": "out",
            "output_name": "answer",
            "value": {"nested": ["ü", None]},
        },
    ),
]


@pytest.mark.parametrize(("event", "wire"), CASES)
def test_wire_shape_and_inverse(event: JobEvent, wire: dict[str, Any]) -> None:
    assert list(to_wire(event).items()) == list(wire.items())  # same keys, same order
    assert from_wire(wire) == event
    assert is_terminal(event) == (
        wire["type"] == "job_update" and wire["status"] in TERMINAL_JOB_STATUSES
    )


def test_statuses_have_one_home() -> None:
    assert set(TERMINAL_JOB_STATUSES) | set(UNFINISHED_JOB_STATUSES) == set(JOB_STATUSES)
    assert UNFINISHED_JOB_STATUSES == ("queued", "running")


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ({"type": "mystery"}, "unknown job event type 'mystery'"),
        ({"type": "job_update", "status": "exploded", "job_id": "j"}, "unknown job status"),
        ({"type": "node_progress", "node_id": "n", "progress": 1}, "without 'total'"),
        ({"status": "running"}, "unknown job event type None"),
        ({"type": ["job_update"]}, "unknown job event type"),
    ],
)
def test_a_dict_that_is_no_event_is_a_value_error(wire: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        from_wire(wire)


@pytest.fixture(scope="module")
async def manager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JobManager]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("events-wire"))
    store = await open_store(settings)
    jobs = JobManager(settings, store, None)  # not started: only its log and followers are used
    yield jobs
    await jobs.aclose()
    await store.close()


@module_loop
async def test_typed_events_are_stored_as_wire_and_replayed_typed(manager: JobManager) -> None:
    store = manager.store
    record = await store.jobs.create("u1", None, {}, graph={"nodes": [], "edges": []})
    job_id = record["id"]
    events: list[JobEvent] = [
        JobUpdate(job_id, None, "running", 1),
        NodeUpdate(job_id, None, "n", "tests.Node", "running"),
        NodeProgress(job_id, None, "n", 1, 2),
        OutputUpdate(job_id, None, "n", "chunk", "raw"),
        NodeUpdate(job_id, None, "n", "tests.Node", "completed"),
        JobUpdate(job_id, None, "completed", 1, result={"answer": 42}),
    ]
    live = manager.subscribe("u1", job_id)  # follows while the log writes
    first = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0)
    log = EventLog(store.jobs, manager.publisher, job_id, 0)
    for event in events:
        log.emit(event)
    await log.close()
    followed = [await first] + [event async for event in live]
    assert followed == events
    stored = await store.jobs.events(job_id)
    assert stored == [{**to_wire(e), "seq": n} for n, e in enumerate(events, 1)]
    replayed = [event async for event in manager.subscribe("u1", job_id)]
    assert replayed == events


@module_loop
async def test_a_malformed_stored_event_is_skipped_with_a_warning(
    manager: JobManager, caplog: pytest.LogCaptureFixture
) -> None:
    store = manager.store
    record = await store.jobs.create("u2", "wf", {}, graph={"nodes": [], "edges": []})
    final = JobUpdate(record["id"], "wf", "failed", 1, error="boom")
    await store.jobs.put_events(
        record["id"], [{"type": "mystery", "seq": 1}, {**to_wire(final), "seq": 2}]
    )
    with caplog.at_level(logging.WARNING, logger="nodetool.workflows.jobs.follow"):
        replayed = [event async for event in manager.subscribe("u2", record["id"])]
    assert replayed == [final]
    assert "unknown job event type 'mystery'" in caplog.text
