"""Megabytes of job results across processes: two `nodetool serve` sharing a fresh PostgreSQL
database and a fresh Redis key prefix. A job with 12 x 1 MB results is followed over `/predict`
on both while it runs: the process not running it reads the job's Redis stream, whose large
entries are written and parsed in threads (`redis_link`, `follow`). Both followers get every
event and the same final result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from nodetool.types.jobs import TERMINAL_JOB_STATUSES
from tests.reliability.support import cli_env
from tests.security.test_job_results import MB, results_graph
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.servers import CliServer
from tests.support.storage import temp_postgres_database

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres, pytest.mark.cluster]

WAIT = 60.0  # bound for anything awaited (never a timing assertion)
ITEMS = 12


@pytest.fixture(scope="module")
async def pair(openai_stub, tmp_path_factory) -> AsyncIterator[tuple[CliServer, CliServer]]:
    async with temp_postgres_database() as db, redis_prefix() as prefix:
        data = tmp_path_factory.mktemp("large-results")
        common = {
            "NODETOOL_DATABASE_URL": db,
            "NODETOOL_REDIS_URL": REDIS_URL,
            "NODETOOL_REDIS_PREFIX": prefix,
        }
        a = CliServer("serve", env=cli_env(openai_stub.url, data / "a", **common))
        b = CliServer("serve", env=cli_env(openai_stub.url, data / "b", **common))
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            a.stop()
            b.stop()


async def follow(server: CliServer, job_id: str) -> list[dict[str, Any]]:
    """The job's events over `/predict` `reconnect_job`, to the final `job_update`."""
    events: list[dict[str, Any]] = []
    url = server.url.replace("http", "ws") + "/predict"
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"command": "reconnect_job", "data": {"job_id": job_id}}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if frame["type"] == "command_result":
                continue
            events.append(frame)
            if frame["type"] == "job_update" and frame["status"] in TERMINAL_JOB_STATUSES:
                return events


async def test_both_processes_follow_a_job_with_megabytes_of_results(pair) -> None:
    a, b = pair
    async with httpx.AsyncClient(timeout=WAIT) as client:
        saved = await client.post(
            a.url + "/api/workflows", json={"name": "big", "graph": results_graph(ITEMS)}
        )
        assert saved.status_code == 201, saved.text
        started = await client.post(f"{a.url}/api/workflows/{saved.json()['id']}/run", json={})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        on_a, on_b = await asyncio.gather(follow(a, job_id), follow(b, job_id))
        record = (await client.get(f"{b.url}/api/jobs/{job_id}")).json()
    assert record["status"] == "completed" and record["results"] == {"out": ["m" * MB] * ITEMS}
    for events in (on_a, on_b):
        outputs = [e for e in events if e["type"] == "output_update"]
        assert [e["value"] for e in outputs] == ["m" * MB] * ITEMS  # none lost, none twice
        final = events[-1]
        assert final["status"] == "completed" and final["result"] == record["results"]
    # the same events in the same order (progress aside: a replay shows the latest of a run)
    kinds = [
        [(e["type"], e.get("status")) for e in ev if e["type"] != "node_progress"]
        for ev in (on_a, on_b)
    ]
    assert kinds[0] == kinds[1]
