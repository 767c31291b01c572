"""`nodetool worker` job routes behind the worker's static-token auth (status, SSE events with
replay then live, cancel), and the job metrics on `/metrics`: the `instance` label, job
counters and durations, and 499 for a client that hangs up mid-stream."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nodetool.api.apps import create_worker_app
from nodetool.runtime import Runtime
from tests.support.servers import ServerThread
from tests.support.settings import stub_settings
from tests.support.workflows import GATES, gate_graph

TOKEN = "tok-" + "x" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 30.0  # a hang guard, never a timing check


@pytest.fixture(scope="module")
def worker(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    settings = stub_settings(
        openai_stub.url,
        tmp_path_factory.mktemp("job-routes"),
        auth_provider="static",
        worker_auth_token=TOKEN,
    )
    with ServerThread(create_worker_app(settings)) as server:
        yield server


def start_gate_job(server: ServerThread, gate: str) -> str:
    """A job started in the worker's own job manager (the worker has no submit-only route)."""
    import asyncio

    runtime: Runtime = server.server.config.app.state.runtime
    assert runtime.jobs is not None and server.loop is not None
    future = asyncio.run_coroutine_threadsafe(
        runtime.jobs.start_job("1", graph=gate_graph(gate), params={"text": gate}), server.loop
    )
    return future.result(timeout=WAIT)["id"]


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


def test_job_routes_need_the_workers_token(worker) -> None:
    job_id = start_gate_job(worker, "auth")
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/events"),
        ("POST", f"/jobs/{job_id}/cancel"),
    ):
        response = httpx.request(method, worker.url + path, timeout=WAIT)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["type"]
    missing = httpx.get(f"{worker.url}/jobs/no-such-job", headers=AUTH, timeout=WAIT)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "job_id"
    missing = httpx.get(f"{worker.url}/jobs/no-such-job/events", headers=AUTH, timeout=WAIT)
    assert missing.status_code == 404
    GATES.setdefault("auth", threading.Event()).set()


def test_events_replay_then_follow_live_and_cancel(worker) -> None:
    job_id = start_gate_job(worker, "routes")
    url = f"{worker.url}/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=AUTH, timeout=WAIT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        seen = []
        for event in events:
            seen.append(event)
            if event.get("node_id") == "g" and event.get("status") == "running":
                break
        record = httpx.get(f"{worker.url}/jobs/{job_id}", headers=AUTH, timeout=WAIT).json()
        assert (record["job_id"], record["status"], record["attempt"]) == (job_id, "running", 1)
        assert "user_id" not in record
        GATES.setdefault("routes", threading.Event()).set()
        seen.extend(events)  # live, to the end
    assert [e["status"] for e in seen if e["type"] == "job_update"] == [
        "queued",
        "running",
        "completed",
    ]
    assert seen[-1]["result"] == {"echo": "routes"}
    with httpx.stream("GET", url, headers=AUTH, timeout=WAIT) as response:
        assert list(sse_events(response)) == seen  # a finished job replays from the store

    stuck = start_gate_job(worker, "never-opened")
    cancel_url = f"{worker.url}/jobs/{stuck}/cancel"
    deadline = time.monotonic() + WAIT
    while httpx.get(f"{worker.url}/jobs/{stuck}", headers=AUTH).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer = httpx.post(cancel_url, headers=AUTH, timeout=WAIT)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    again = httpx.post(cancel_url, headers=AUTH, timeout=WAIT).json()
    assert again["status"] == "cancelled"  # final: unchanged


def test_metrics_count_jobs_per_instance_and_hang_ups_as_499(worker) -> None:
    job_id = start_gate_job(worker, "hang-up")
    with httpx.stream(
        "GET", f"{worker.url}/jobs/{job_id}/events", headers=AUTH, timeout=WAIT
    ) as response:
        next(sse_events(response))  # the client leaves mid-stream
    GATES.setdefault("hang-up", threading.Event()).set()
    deadline = time.monotonic() + WAIT
    while True:
        text = httpx.get(f"{worker.url}/metrics", headers=AUTH, timeout=WAIT).text
        if 'route="/jobs/{job_id}/events",status="499"' in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    (instance,) = set(re.findall(r'instance="([^"]+)"', text))
    runtime: Runtime = worker.server.config.app.state.runtime
    assert runtime.jobs is not None and runtime.jobs.instance == instance

    def value(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
        assert match, name
        return float(match.group(1))

    assert value(f'nodetool_jobs_total{{event="queued",instance="{instance}"}}') >= 4
    assert value(f'nodetool_jobs_total{{event="completed",instance="{instance}"}}') >= 1
    assert value(f'nodetool_jobs_total{{event="cancelled",instance="{instance}"}}') >= 1
    assert value(f'nodetool_jobs_total{{event="retried",instance="{instance}"}}') == 0
    count = f'nodetool_job_duration_seconds_count{{instance="{instance}",status="completed"}}'
    assert value(count) >= 1
    assert f'nodetool_jobs_running{{instance="{instance}"}}' in text
    assert 'status="500"' not in text


def test_workers_share_one_metrics_view(openai_stub, tmp_path) -> None:
    """`--workers 2`: every scrape, whichever process answers, shows both processes."""
    from tests.reliability.support import cli_env
    from tests.support.servers import CliServer

    with CliServer("worker", "--workers", "2", env=cli_env(openai_stub.url, tmp_path)) as server:
        deadline = time.monotonic() + WAIT
        while True:  # both processes have started
            text = httpx.get(f"{server.url}/metrics", timeout=WAIT).text
            if len(set(re.findall(r'instance="([^"]+)"', text))) == 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        for _ in range(6):
            httpx.get(f"{server.url}/ping", timeout=WAIT)
            text = httpx.get(f"{server.url}/metrics", timeout=WAIT).text
            assert len(set(re.findall(r'instance="([^"]+)"', text))) == 2
        pings = re.findall(
            r'nodetool_http_requests_total\{[^}]*route="/ping"[^}]*\} ([0-9.]+)', text
        )
        assert sum(float(p) for p in pings) == 6  # counted once each, across the processes
