"""Jobs across real processes: two `nodetool serve` and one `nodetool worker` sharing a fresh
PostgreSQL database and a fresh Redis key prefix. Process A reaches Redis through a proxy the
tests cut. Workflows stream from the OpenAI stub through an Agent node.

Checked: 20 jobs followed from another process lose no event; `GET /api/jobs` and `/predict`
`get_status` agree across processes; with A's Redis cut, a job A runs is cancelled from B
within 1 s, and A logs the outage as one warning line without tracebacks; SIGKILL of the
process running a job gets it re-run elsewhere and completed within 10 s, followers on the
other processes seeing `attempt: 2` and the result.

The same cluster on PostgreSQL alone (no Redis: jobs are leased from the jobs table): SIGKILL
of the process running a job gets it re-run elsewhere and completed within 10 s, followers
seeing `attempt: 2` and the result; a job whose workflow allows one attempt fails with a
stored final event instead.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from nodetool.types.jobs import TERMINAL_JOB_STATUSES
from tests.reliability.support import cli_env
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.servers import CliServer
from tests.support.storage import temp_postgres_database
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres, pytest.mark.cluster]

WAIT = 30.0  # bound for anything awaited (never a timing assertion)
WORKFLOW = "cluster-agent"
AGENT_GRAPH = {
    "nodes": [
        {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "prompt"}},
        {"id": "agent", "type": "nodetool.agents.Agent", "data": {}},
        {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "answer"}},
    ],
    "edges": [
        {"source": "in", "sourceHandle": "output", "target": "agent", "targetHandle": "prompt"},
        {"source": "agent", "sourceHandle": "text", "target": "out", "targetHandle": "value"},
    ],
}


class Cluster:
    def __init__(
        self, a: CliServer, b: CliServer, worker: CliServer, proxy: TcpProxy | None, db: str
    ):
        self.a, self.b, self.worker, self.proxy, self.db = a, b, worker, proxy, db
        self.servers = [a, b, worker]

    async def owner_of(self, job_id: str) -> CliServer:
        """The process running the job (its instance id in the store, in its /metrics)."""
        conn = await asyncpg.connect(self.db)
        try:
            owner = await conn.fetchval("SELECT owner FROM jobs WHERE id = $1", job_id)
        finally:
            await conn.close()
        for server in self.servers:
            if server.proc.poll() is None and f'instance="{owner}"' in _get(server, "/metrics"):
                return server
        raise AssertionError(f"no live process is instance {owner!r}")


def _get(server: CliServer, path: str) -> str:
    response = httpx.get(server.url + path, timeout=WAIT)
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture(scope="module")
async def cluster(openai_stub, tmp_path_factory) -> AsyncIterator[Cluster]:
    async with temp_postgres_database() as db, redis_prefix() as prefix:
        host, _, port = REDIS_URL.removeprefix("redis://").partition("/")[0].partition(":")
        with TcpProxy(host, int(port or 6379)) as proxy:
            data = tmp_path_factory.mktemp("cluster")
            common = {
                "NODETOOL_DATABASE_URL": db,
                "NODETOOL_REDIS_URL": REDIS_URL,
                "NODETOOL_REDIS_PREFIX": prefix,
                "NODETOOL_MAX_CONCURRENT_JOBS": "8",
            }
            proxied = {**common, "NODETOOL_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
            a = CliServer("serve", env=cli_env(openai_stub.url, data / "a", **proxied))
            b = CliServer("serve", env=cli_env(openai_stub.url, data / "b", **common))
            worker = CliServer("worker", env=cli_env(openai_stub.url, data / "w", **common))
            servers = [a, b, worker]
            try:
                for server in servers:
                    server.start()
                created = httpx.post(
                    a.url + "/api/workflows",
                    json={"id": WORKFLOW, "name": "Cluster agent", "graph": AGENT_GRAPH},
                    timeout=WAIT,
                )
                assert created.status_code == 201, created.text
                yield Cluster(a, b, worker, proxy, db)
            finally:
                for server in servers:
                    server.stop()


def submit(server: CliServer, prompt: str) -> str:
    response = httpx.post(
        f"{server.url}/api/workflows/{WORKFLOW}/run",
        json={"params": {"prompt": prompt}},
        timeout=WAIT,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return response.json()["id"]


async def follow(server: CliServer, job_id: str) -> list[dict[str, Any]]:
    """The job's events over the worker's SSE route, to the end."""
    events: list[dict[str, Any]] = []
    url = f"{server.url}/jobs/{job_id}/events"
    async with httpx.AsyncClient(timeout=WAIT) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


async def follow_predict(server: CliServer, job_id: str) -> list[dict[str, Any]]:
    """The job's events over a `serve` process's /predict WebSocket (`reconnect_job`)."""
    events: list[dict[str, Any]] = []
    async with connect(server.url.replace("http", "ws") + "/predict") as ws:
        await ws.send(json.dumps({"command": "reconnect_job", "data": {"job_id": job_id}}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if frame["type"] == "command_result":
                continue
            events.append(frame)
            if frame["type"] == "job_update" and frame["status"] in TERMINAL_JOB_STATUSES:
                return events


def job_updates(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["status"], e["attempt"]) for e in events if e["type"] == "job_update"]


def answer_text(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["value"] for e in events if e["type"] == "output_update" and e["output_name"] == "chunk"
    )


async def test_twenty_jobs_followed_across_processes_lose_no_event(cluster) -> None:
    jobs = [
        submit(cluster.a if n % 2 else cluster.b, f"[[chunks:25]] [[slow:0.01]] job {n}")
        for n in range(20)
    ]
    async with asyncio.timeout(WAIT * 2):
        live = await asyncio.gather(*(follow(cluster.worker, job_id) for job_id in jobs))
        replayed = await asyncio.gather(*(follow(cluster.worker, job_id) for job_id in jobs))
    for n, (events, again) in enumerate(zip(live, replayed, strict=True)):
        assert job_updates(events) == [("queued", 0), ("running", 1), ("completed", 1)]
        assert answer_text(events).strip() == f"Echo: job {n}"  # every chunk, in order
        assert events[-1]["result"]["answer"].strip() == f"Echo: job {n}"
        assert again == events  # what the store kept is exactly what was streamed


async def test_job_lists_agree_across_processes(cluster) -> None:
    job_id = submit(cluster.b, "[[chunks:4]] listed")
    await follow(cluster.worker, job_id)
    listed = [
        httpx.get(f"{server.url}/api/jobs", params={"limit": 100}, timeout=WAIT).json()
        for server in (cluster.a, cluster.b)
    ]
    assert listed[0] == listed[1] and listed[0]["jobs"][0]["id"] == job_id
    first = httpx.get(f"{cluster.a.url}/api/jobs", params={"limit": 5}, timeout=WAIT).json()
    rest = httpx.get(
        f"{cluster.a.url}/api/jobs", params={"limit": 100, "cursor": first["next"]}, timeout=WAIT
    ).json()
    assert [j["id"] for j in first["jobs"] + rest["jobs"]] == [j["id"] for j in listed[0]["jobs"]]
    done = httpx.get(
        f"{cluster.b.url}/api/jobs",
        params={"status": "completed", "workflow_id": WORKFLOW, "limit": 100},
        timeout=WAIT,
    ).json()
    assert {j["status"] for j in done["jobs"]} == {"completed"} and len(done["jobs"]) >= 21
    bad = httpx.get(f"{cluster.a.url}/api/jobs", params={"status": "nope"}, timeout=WAIT)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"

    running = submit(cluster.a, "[[chunks:50]] [[slow:0.1]] still going")
    statuses = []
    for server in (cluster.a, cluster.b):
        async with connect(server.url.replace("http", "ws") + "/predict") as ws:
            await ws.send(json.dumps({"command": "get_status", "data": {}}))
            statuses.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT))["jobs"])
    assert [j["job_id"] for j in statuses[0]] == [j["job_id"] for j in statuses[1]] == [running]
    httpx.post(f"{cluster.b.url}/api/jobs/{running}/cancel", timeout=WAIT)


async def test_cancel_reaches_an_owner_that_lost_redis(cluster) -> None:
    cluster.proxy.cut()  # A cannot reach Redis: what it accepts now, it runs itself
    try:
        job_id = submit(cluster.a, "[[chunks:200]] [[slow:0.05]] cut off")
        follower = asyncio.create_task(follow(cluster.worker, job_id))
        async with asyncio.timeout(WAIT):
            while not any(e["type"] == "output_update" for e in await _stored(cluster, job_id)):
                await asyncio.sleep(0.05)
        assert await cluster.owner_of(job_id) is cluster.a
        started = time.monotonic()
        response = httpx.post(f"{cluster.b.url}/api/jobs/{job_id}/cancel", timeout=WAIT)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled", response.json()  # A confirmed
        assert elapsed < 1.0, f"cancel took {elapsed:.2f} s"
        events = await asyncio.wait_for(follower, WAIT)
        assert job_updates(events)[-1] == ("cancelled", 1)
        chunks = len([e for e in events if e["type"] == "output_update"])
        await asyncio.sleep(0.5)  # the run really stopped: nothing more is stored
        assert len([e for e in await _stored(cluster, job_id) if "output_name" in e]) == chunks
    finally:
        cluster.proxy.restore()
    # A is back on Redis: a job it accepts goes through the queue and completes
    async with asyncio.timeout(WAIT):
        events = await follow(cluster.worker, submit(cluster.a, "[[chunks:3]] back"))
    assert events[-1]["result"]["answer"].strip() == "Echo: back"


async def _stored(cluster: Cluster, job_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(cluster.db)
    try:
        rows = await conn.fetch(
            "SELECT event FROM job_events WHERE job_id = $1 ORDER BY seq", job_id
        )
    finally:
        await conn.close()
    return [json.loads(row["event"]) for row in rows]


async def test_the_outage_was_one_warning_line_without_tracebacks(cluster) -> None:
    cluster.a.stop()  # its log is complete once it has exited
    cluster.servers.remove(cluster.a)
    assert cluster.a.proc.stdout is not None
    log = cluster.a.proc.stdout.read()
    assert log.count("Redis unreachable") == 1, log
    assert "Traceback" not in log, log


async def test_a_killed_workers_job_completes_elsewhere(cluster) -> None:
    await kill_owner_and_follow(cluster, WORKFLOW, "survive", expect="completed")


async def kill_owner_and_follow(
    cluster: Cluster, workflow: str, prompt: str, *, expect: str
) -> list[dict[str, Any]]:
    """Submit a job, SIGKILL the process running it mid-stream, follow it on every other
    process to its end: the job ends `expect` on attempt 2 within 10 s of the kill."""
    submitter = cluster.b if cluster.b in cluster.servers else cluster.a
    response = httpx.post(
        f"{submitter.url}/api/workflows/{workflow}/run",
        json={"params": {"prompt": f"[[chunks:40]] [[slow:0.05]] {prompt}"}},
        timeout=WAIT,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    async with asyncio.timeout(WAIT):
        while not any(e["type"] == "output_update" for e in await _stored(cluster, job_id)):
            await asyncio.sleep(0.05)
    victim = await cluster.owner_of(job_id)
    watchers = [s for s in cluster.servers if s is not victim]  # SSE on the worker, /predict
    followers = [
        asyncio.create_task((follow if s is cluster.worker else follow_predict)(s, job_id))
        for s in watchers
    ]
    await asyncio.sleep(0.2)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=WAIT)
    cluster.servers.remove(victim)
    killed = time.monotonic()
    followed = await asyncio.wait_for(asyncio.gather(*followers), WAIT)
    ended_after = time.monotonic() - killed
    for events in followed:
        updates = job_updates(events)
        assert updates[:2] == [("queued", 0), ("running", 1)]
        assert updates[-1] == (expect, 2)
        if expect == "completed":
            assert ("running", 2) in updates
            assert events[-1]["result"]["answer"].strip() == f"Echo: {prompt}"
    assert ended_after < 10.0, f"ended {ended_after:.1f} s after the kill"
    for server in watchers:
        path = "/jobs/" if server is cluster.worker else "/api/jobs/"
        record = httpx.get(f"{server.url}{path}{job_id}", timeout=WAIT).json()
        assert (record["status"], record["attempt"]) == (expect, 2)
    # the final event is stored: a replay from the store ends with it
    assert job_updates((await _stored(cluster, job_id))[-1:]) == [(expect, 2)]
    return followed[0]


# ---- PostgreSQL without Redis: the jobs table is the queue (leases) ------------------------


@pytest.fixture(scope="module")
async def pg_cluster(openai_stub, tmp_path_factory) -> AsyncIterator[Cluster]:
    async with temp_postgres_database() as db:
        data = tmp_path_factory.mktemp("pg-cluster")
        common = {"NODETOOL_DATABASE_URL": db, "NODETOOL_MAX_CONCURRENT_JOBS": "8"}
        a = CliServer("serve", env=cli_env(openai_stub.url, data / "a", **common))
        b = CliServer("serve", env=cli_env(openai_stub.url, data / "b", **common))
        worker = CliServer("worker", env=cli_env(openai_stub.url, data / "w", **common))
        servers = [a, b, worker]
        try:
            for server in servers:
                server.start()
            for workflow, extra in ((WORKFLOW, {}), (ONCE, {"max_attempts": 1})):
                created = httpx.post(
                    a.url + "/api/workflows",
                    json={"id": workflow, "name": workflow, "graph": AGENT_GRAPH, **extra},
                    timeout=WAIT,
                )
                assert created.status_code == 201, created.text
            yield Cluster(a, b, worker, None, db)
        finally:
            for server in servers:
                server.stop()


ONCE = "cluster-agent-once"


async def test_without_redis_a_killed_processs_job_completes_elsewhere(pg_cluster) -> None:
    events = await kill_owner_and_follow(pg_cluster, WORKFLOW, "leased", expect="completed")
    assert answer_text(events).strip().endswith("Echo: leased")  # attempt 2 streamed it all


async def test_without_redis_a_job_out_of_attempts_fails_with_a_final_event(pg_cluster) -> None:
    events = await kill_owner_and_follow(pg_cluster, ONCE, "only once", expect="failed")
    assert events[-1]["error"] == "worker lost; gave up after 1 attempt(s)"
