"""JobManager on the real SQLite store: validation before a job exists, persisted jobs and
events, replay (live and from the store), cancel, crash recovery, workflow files."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import NotFoundError, WorkflowError
from nodetool.providers.registry import ProviderRegistry
from nodetool.storage import open_store
from nodetool.workflows.jobs import JobManager
from tests.support.workflows import EXAMPLES, GATES, gate_graph, wire

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def settings(openai_stub, tmp_path_factory) -> Settings:
    return Settings(
        openai_base_url=openai_stub.url,
        openai_api_key="sk-test",
        default_provider="openai",
        default_model="stub-model",
        data_dir=tmp_path_factory.mktemp("jobs"),
    )


@pytest.fixture(scope="module")
async def parts(settings) -> AsyncIterator[tuple[Any, ProviderRegistry]]:
    store = await open_store(settings)
    providers = await ProviderRegistry.create(settings)
    yield store, providers
    await providers.aclose()
    await store.close()


@pytest.fixture(scope="module")
async def jobs(settings, parts) -> AsyncIterator[JobManager]:
    store, providers = parts
    manager = JobManager(settings, store, providers)
    await manager.start()
    await manager.load_workflow_files(sorted(EXAMPLES.glob("*.json")))
    yield manager
    await manager.aclose()


async def collect(manager: JobManager, user: str, job_id: str) -> list[dict[str, Any]]:
    return [event async for event in wire(manager.subscribe(user, job_id))]


async def wait_for_event(stream: AsyncIterator[dict], **match: Any) -> list[dict]:
    seen = []
    async for event in stream:
        seen.append(event)
        if all(event.get(k) == v for k, v in match.items()):
            return seen
    raise AssertionError(f"stream ended before {match}: {seen}")


async def test_workflow_files_are_shared_and_upserted_by_stable_id(jobs, parts) -> None:
    store, _ = parts
    listed = {w["id"]: w for w in await store.workflows.list("someone")}
    assert {
        "greeting-card",
        "meeting-brief",
        "packing_list",
        "shipping-quote",
        "times-table",
    } <= set(listed)
    assert listed["shipping-quote"]["user_id"] is None
    before = len(listed)
    await jobs.load_workflow_files([EXAMPLES / "Shipping Quote.json"])
    assert len(await store.workflows.list("someone")) == before


async def test_bad_workflow_files_name_the_file(jobs, tmp_path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(WorkflowError, match="broken.json: not a valid workflow JSON"):
        await jobs.load_workflow_files([broken])
    bad_graph = tmp_path / "bad-graph.json"
    workflow = json.loads((EXAMPLES / "Shipping Quote.json").read_text())
    workflow["graph"]["nodes"][0]["type"] = "nodetool.output.Nope"
    bad_graph.write_text(json.dumps(workflow))
    with pytest.raises(WorkflowError, match="bad-graph.json: unknown node type"):
        await jobs.load_workflow_files([bad_graph])
    with pytest.raises(WorkflowError, match="missing.json: cannot read workflow file"):
        await jobs.load_workflow_files([tmp_path / "missing.json"])


async def test_job_runs_persists_and_streams_events(jobs, parts) -> None:
    store, _ = parts
    record = await jobs.start_job("u1", workflow_id="shipping-quote", params={"weight": 1})
    assert record["status"] == "queued" and record["workflow_id"] == "shipping-quote"
    events = await collect(jobs, "u1", record["id"])
    statuses = [e["status"] for e in events if e["type"] == "job_update"]
    assert statuses == ["queued", "running", "completed"]
    final = events[-1]
    assert final["result"]["quote"].startswith("## Shipping quote\n\nWeight: 1 kg")
    assert "Letter post: 1 kg" in final["result"]["quote"]
    assert all(e["job_id"] == record["id"] for e in events)
    assert all(e["workflow_id"] == "shipping-quote" for e in events)
    stored = await jobs.get("u1", record["id"])
    assert stored["status"] == "completed" and stored["params"] == {"weight": 1}
    assert stored["results"] == final["result"]
    replay = await collect(jobs, "u1", record["id"])  # finished: replayed from the store
    assert replay == events


async def test_validation_happens_before_any_job(jobs) -> None:
    with pytest.raises(WorkflowError, match="param 'weight': expected an integer"):
        await jobs.start_job("u1", workflow_id="shipping-quote", params={"weight": "x"})
    with pytest.raises(NotFoundError, match="workflow 'nope' not found"):
        await jobs.start_job("u1", workflow_id="nope")
    graph = {"nodes": [{"id": "a", "type": "nodetool.what.Ever"}], "edges": []}
    with pytest.raises(WorkflowError, match="unknown node type 'nodetool.what.Ever'"):
        await jobs.start_job("u1", graph=graph)
    with pytest.raises(WorkflowError, match="give a workflow_id or a graph"):
        await jobs.start_job("u1")
    with pytest.raises(WorkflowError, match="params must be an object"):
        await jobs.start_job("u1", graph=gate_graph("x"), params=["a"])  # type: ignore[arg-type]
    assert await jobs.unfinished("u1") == []


async def test_users_only_see_their_own_jobs_and_workflows(jobs, parts) -> None:
    store, _ = parts
    await store.workflows.upsert(
        "owner", {"id": "private-wf", "name": "P", "graph": gate_graph("p")}
    )
    with pytest.raises(NotFoundError):
        await jobs.start_job("intruder", workflow_id="private-wf")
    record = await jobs.start_job("owner", graph=gate_graph("own"), params={"text": "mine"})
    with pytest.raises(NotFoundError):
        await jobs.get("intruder", record["id"])
    with pytest.raises(NotFoundError):
        await collect(jobs, "intruder", record["id"])
    with pytest.raises(NotFoundError):
        await jobs.cancel("intruder", record["id"])
    GATES.setdefault("own", threading.Event()).set()
    events = await collect(jobs, "owner", record["id"])
    assert events[-1]["result"] == {"echo": "mine"}


async def test_late_subscriber_replays_then_follows_live(jobs) -> None:
    record = await jobs.start_job("u2", graph=gate_graph("live"), params={"text": "hello"})
    first = wire(jobs.subscribe("u2", record["id"]))
    seen = await wait_for_event(first, type="node_update", node_id="g", status="running")
    await first.aclose()  # the client goes away; the job keeps running
    (unfinished,) = await jobs.unfinished("u2")
    assert (unfinished["id"], unfinished["status"], unfinished["attempt"]) == (
        record["id"],
        "running",
        1,
    )
    second = wire(jobs.subscribe("u2", record["id"]))
    replayed = [await anext(second) for _ in range(len(seen))]
    assert replayed == seen  # the state so far, in order
    GATES.setdefault("live", threading.Event()).set()
    rest = [event async for event in second]
    assert rest[-1]["type"] == "job_update" and rest[-1]["status"] == "completed"
    assert rest[-1]["result"] == {"echo": "hello"}
    assert {"type": "output_update", "node_id": "out", "output_name": "echo"}.items() <= next(
        e for e in rest if e["type"] == "output_update"
    ).items()
    stored = await jobs.get("u2", record["id"])
    assert stored["graph"]["nodes"][1]["type"] == "tests.Gate"  # ad-hoc graphs are kept


async def test_cancel_marks_the_job_cancelled(jobs) -> None:
    record = await jobs.start_job("u3", graph=gate_graph("never"), params={"text": "x"})
    stream = wire(jobs.subscribe("u3", record["id"]))
    await wait_for_event(stream, type="node_update", node_id="g", status="running")
    cancelled = await jobs.cancel("u3", record["id"])
    assert cancelled["status"] == "cancelled"  # the runner confirmed
    rest = [event async for event in stream]
    assert rest[-1] == {
        "type": "job_update",
        "status": "cancelled",
        "job_id": record["id"],
        "workflow_id": None,
        "attempt": 1,
        "error": "cancelled",
    }
    again = await jobs.cancel("u3", record["id"])  # finished: unchanged
    assert again["status"] == "cancelled"


async def test_run_to_completion_results_and_failures(jobs) -> None:
    results = await jobs.run_to_completion(
        "u4", workflow_id="shipping-quote", params={"weight": 30}
    )
    assert "Freight: 30 kg" in results["quote"]
    failing = {
        "nodes": [{"id": "d", "type": "nodetool.math.Divide", "data": {"a": 1, "b": 0}}],
        "edges": [],
    }
    with pytest.raises(WorkflowError) as info:
        await jobs.run_to_completion("u4", graph=failing)
    assert info.value.message == "node 'd' (nodetool.math.Divide) failed: division by zero"
    results = await jobs.run_to_completion("u4", workflow_id="meeting-brief")
    assert "Echo: Summarise these meeting notes" in results["brief"]


async def test_cancelling_the_caller_cancels_the_job(jobs) -> None:
    task = asyncio.create_task(
        jobs.run_to_completion("u5", graph=gate_graph("caller"), params={"text": "x"})
    )
    while not await jobs.unfinished("u5"):
        await asyncio.sleep(0.01)
    (running,) = await jobs.unfinished("u5")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = await collect(jobs, "u5", running["id"])
    assert events[-1]["status"] == "cancelled"


async def test_restart_recovers_and_other_processes_replay_from_the_store(settings, parts) -> None:
    store, providers = parts
    crashed = await store.jobs.create("u6", None, {}, graph=gate_graph("x"))
    await store.jobs.update(crashed["id"], status="running")
    manager = JobManager(settings, store, providers)
    await manager.start()  # a new process: leftovers are failed
    record = await manager.get("u6", crashed["id"])
    assert record["status"] == "failed" and record["error"] == "server restarted"
    events = await collect(manager, "u6", crashed["id"])
    assert events == [
        {
            "type": "job_update",
            "status": "failed",
            "job_id": crashed["id"],
            "workflow_id": None,
            "attempt": 0,
            "error": "server restarted",
        }
    ]
    # a job running in one manager is followed from another one sharing the database
    first = JobManager(settings, store, providers)
    await first.start()
    job = await first.start_job("u6", graph=gate_graph("shared-db"), params={"text": "hi"})
    live = wire(first.subscribe("u6", job["id"]))
    await wait_for_event(live, type="node_update", node_id="g", status="running")
    await live.aclose()
    second = JobManager(settings, store, providers)
    follower = asyncio.create_task(collect(second, "u6", job["id"]))
    GATES.setdefault("shared-db", threading.Event()).set()
    events = await follower
    assert [e["status"] for e in events if e["type"] == "job_update"] == [
        "queued",
        "running",
        "completed",
    ]
    assert events[-1]["result"] == {"echo": "hi"}
    await first.aclose()


async def test_aclose_cancels_running_jobs(settings, parts) -> None:
    store, providers = parts
    manager = JobManager(settings, store, providers)
    await manager.start()
    running = await manager.start_job("u7", graph=gate_graph("closed"), params={"text": "x"})
    stream = wire(manager.subscribe("u7", running["id"]))
    await wait_for_event(stream, type="node_update", node_id="g", status="running")
    await stream.aclose()
    manager.runner.limit = 0  # the next job stays in the queue
    waiting = await manager.start_job("u7", graph=gate_graph("closed"), params={"text": "y"})
    await manager.aclose()
    for record in (running, waiting):
        assert (await manager.get("u7", record["id"]))["status"] == "cancelled"
        events = await store.jobs.events(record["id"])
        assert events[-1]["status"] == "cancelled"
