"""Workflow HTTP endpoints on real servers: the editor's /api/workflows CRUD, run and /api/jobs,
and the worker's GET /workflows, POST /workflows/{id}/run (JSON) and /run/stream (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nodetool.api.apps import create_editor_app, create_worker_app
from nodetool.config import Settings
from nodetool.storage import open_store
from tests.support.servers import ServerThread
from tests.support.workflows import EXAMPLES


def workflow(workflow_id: str | None, name: str, nodes: list, edges: list) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "graph": {"nodes": nodes, "edges": edges}}
    if workflow_id is not None:
        data["id"] = workflow_id
    return data


def link(source: str, target: str, handle: str) -> dict[str, str]:
    return {"source": source, "sourceHandle": "output", "target": target, "targetHandle": handle}


def gate_workflow(workflow_id: str, gate: str) -> dict[str, Any]:
    return workflow(
        workflow_id,
        f"Gate {gate}",
        [
            {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
            {"id": "g", "type": "tests.Gate", "data": {"gate": gate}},
            {"id": "out", "type": "nodetool.output.Output", "data": {"name": "echo"}},
        ],
        [link("in", "g", "value"), link("g", "out", "value")],
    )


DIVIDE = workflow(
    "divide-by-zero",
    "Divide by zero",
    [
        {"id": "d", "type": "nodetool.math.Divide", "data": {"a": 1, "b": 0}},
        {"id": "o", "type": "nodetool.output.FloatOutput", "data": {"name": "ratio"}},
    ],
    [link("d", "o", "value")],
)


def settings_for(stub_url: str, data_dir: Path, files: list[Path]) -> Settings:
    return Settings(
        openai_base_url=stub_url,
        openai_api_key="sk-test",
        default_provider="openai",
        default_model="stub-model",
        data_dir=data_dir,
        config_dir=data_dir / "config",
        auth_provider="none",
        workflow_files=[*sorted(EXAMPLES.glob("*.json")), *files],
    )


@pytest.fixture(scope="module")
def editor(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    data_dir = tmp_path_factory.mktemp("editor")
    with ServerThread(create_editor_app(settings_for(openai_stub.url, data_dir, []))) as server:
        yield server


@pytest.fixture(scope="module")
def worker_settings(openai_stub, tmp_path_factory) -> Settings:
    data_dir = tmp_path_factory.mktemp("worker")
    files = []
    for data in (DIVIDE, gate_workflow("gate-sse", "sse"), gate_workflow("gate-cancel", "cancel")):
        path = data_dir / f"{data['id']}.json"
        path.write_text(json.dumps(data))
        files.append(path)
    return settings_for(openai_stub.url, data_dir, files)


@pytest.fixture(scope="module")
def worker(worker_settings) -> Iterator[ServerThread]:
    with ServerThread(create_worker_app(worker_settings)) as server:
        yield server


def assert_error(response: httpx.Response, status: int, fragment: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"], error
    assert set(error) == {"message", "type", "param", "code"}
    return error


def wait_job(base: str, job_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30  # a hang guard, not a timing check
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}")


# ---- editor ---------------------------------------------------------------------------------


def test_editor_lists_the_example_workflows(editor) -> None:
    response = httpx.get(f"{editor.url}/api/workflows")
    assert response.status_code == 200
    ids = {w["id"] for w in response.json()["workflows"]}
    assert {"shipping-quote", "greeting-card", "packing_list", "meeting-brief"} <= ids


def test_editor_crud(editor) -> None:
    base = f"{editor.url}/api/workflows"
    body = workflow(
        None,
        "Greeter",
        [
            {"id": "n", "type": "nodetool.input.StringInput", "data": {"name": "who"}},
            {"id": "f", "type": "nodetool.text.FormatText", "data": {"template": "Hi {{ who }}"}},
            {"id": "o", "type": "nodetool.output.StringOutput", "data": {"name": "greeting"}},
        ],
        [link("n", "f", "who"), link("f", "o", "value")],
    )
    created = httpx.post(base, json=body)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["id"] and record["name"] == "Greeter" and record["user_id"] == "1"
    fetched = httpx.get(f"{base}/{record['id']}").json()
    assert fetched["graph"] == body["graph"]
    renamed = httpx.put(f"{base}/{record['id']}", json={**body, "name": "Greeter 2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Greeter 2"
    assert {w["id"] for w in httpx.get(base).json()["workflows"]} >= {record["id"]}
    deleted = httpx.delete(f"{base}/{record['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert_error(httpx.get(f"{base}/{record['id']}"), 404, "not found")


def test_editor_rejects_bad_workflows(editor) -> None:
    base = f"{editor.url}/api/workflows"
    bad = workflow("bad", "Bad", [{"id": "x", "type": "nodetool.nope.Node"}], [])
    error = assert_error(httpx.post(base, json=bad), 400, "unknown node type 'nodetool.nope.Node'")
    assert error["code"] == "unknown_node_type"
    assert_error(httpx.post(base, json=[1, 2]), 400, "must be a workflow object")
    assert_error(
        httpx.post(base, content=b"{nope", headers={"content-type": "application/json"}), 400, ""
    )
    cyclic = workflow(
        "cyc",
        "Cyc",
        [
            {"id": "a", "type": "nodetool.text.FormatText", "data": {"template": "x"}},
            {"id": "b", "type": "nodetool.text.FormatText", "data": {"template": "x"}},
        ],
        [link("a", "b", "v"), link("b", "a", "v")],
    )
    assert_error(httpx.put(f"{base}/cyc", json=cyclic), 400, "cycle")
    assert_error(httpx.delete(f"{base}/shipping-quote"), 403, "shared")
    shared = httpx.put(f"{base}/shipping-quote", json=DIVIDE)
    assert_error(shared, 403, "shared and read-only")


def test_editor_run_and_jobs(editor) -> None:
    run = httpx.post(
        f"{editor.url}/api/workflows/shipping-quote/run", json={"params": {"weight": 1}}
    )
    assert run.status_code == 202, run.text
    job = run.json()
    assert job["job_id"] == job["id"] and job["status"] == "queued"
    done = wait_job(editor.url, job["id"], ("completed", "failed"))
    assert done["status"] == "completed"
    assert "Letter post: 1 kg fits a padded envelope" in done["results"]["quote"]
    assert "user_id" not in done
    assert_error(
        httpx.post(
            f"{editor.url}/api/workflows/shipping-quote/run",
            json={"params": {"weight": "thirty"}},
        ),
        400,
        "param 'weight': expected an integer",
    )
    assert_error(httpx.post(f"{editor.url}/api/workflows/missing/run"), 404, "not found")
    assert_error(httpx.get(f"{editor.url}/api/jobs/missing"), 404, "not found")


def test_editor_cancel_job(editor) -> None:
    created = httpx.put(f"{editor.url}/api/workflows/gate-editor", json=gate_workflow(None, "ed"))
    assert created.status_code == 200, created.text
    job = httpx.post(
        f"{editor.url}/api/workflows/gate-editor/run", json={"params": {"text": "x"}}
    ).json()
    wait_job(editor.url, job["id"], ("running",))
    cancelled = httpx.post(f"{editor.url}/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert httpx.get(f"{editor.url}/api/jobs/{job['id']}").json()["status"] == "cancelled"


# ---- worker ---------------------------------------------------------------------------------


def sse_events(response: httpx.Response) -> list[Any]:
    events: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_worker_lists_workflows_with_inputs_and_outputs(worker) -> None:
    response = httpx.get(f"{worker.url}/workflows")
    assert response.status_code == 200
    listed = {w["id"]: w for w in response.json()["workflows"]}
    quote = listed["shipping-quote"]
    assert quote["name"] == "Shipping Quote"
    assert quote["inputs"] == [
        {
            "name": "weight",
            "type": "integer",
            "default": 5,
            "description": "Parcel weight in kilograms",
            "node_id": "input_weight",
        }
    ]
    assert quote["outputs"] == ["quote"]
    assert "divide-by-zero" in listed and "gate-sse" in listed


@pytest.mark.parametrize("weight", [1, 5, 30])
def test_worker_run_returns_results(worker, weight: int) -> None:
    response = httpx.post(f"{worker.url}/workflows/shipping-quote/run", json={"weight": weight})
    assert response.status_code == 200, response.text
    text = response.json()["results"]["quote"]
    assert f"Weight: {weight} kg\n" in text
    service = {1: "Letter post", 5: "Parcel", 30: "Freight"}[weight]
    assert text.rsplit("\n", 1)[1].startswith(f"{service}: {weight} kg ")


def test_worker_run_errors(worker) -> None:
    url = f"{worker.url}/workflows/shipping-quote/run"
    error = assert_error(httpx.post(url, json={"weight": "x"}), 400, "param 'weight'")
    assert error["param"] == "params.weight"
    assert_error(httpx.post(url, json={"other": 1}), 400, "unknown param 'other'")
    assert_error(httpx.post(url, json=[1]), 400, "JSON object of params")
    assert_error(
        httpx.post(url, content=b"{", headers={"content-type": "application/json"}), 400, ""
    )
    assert_error(httpx.post(f"{worker.url}/workflows/nope/run", json={}), 404, "not found")
    failed = assert_error(
        httpx.post(f"{worker.url}/workflows/divide-by-zero/run"),
        400,
        "node 'd' (nodetool.math.Divide) failed: division by zero",
    )
    assert failed["code"] == "invalid_workflow"
    empty = httpx.post(url)  # no body: the defaults
    assert "Weight: 5 kg" in empty.json()["results"]["quote"]


def test_worker_stream_sse(worker, openai_stub) -> None:
    url = f"{worker.url}/workflows/meeting-brief/run/stream"
    with httpx.stream("POST", url, json={"notes": "x,y\n1,2"}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    complete = events[-2]
    assert complete["type"] == "complete"
    assert "Echo: Summarise these meeting notes" in complete["results"]["brief"]
    body = events[:-2]
    statuses = [e["status"] for e in body if e["type"] == "job_update"]
    assert statuses == ["queued", "running", "completed"]
    assert {"node_update", "output_update"} <= {e["type"] for e in body}
    assert body[-1]["result"] == complete["results"]


def test_worker_stream_failure_and_bad_input(worker) -> None:
    url = f"{worker.url}/workflows/divide-by-zero/run/stream"
    with httpx.stream("POST", url, timeout=30) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["message"] == (
        "node 'd' (nodetool.math.Divide) failed: division by zero"
    )
    assert events[-3]["type"] == "job_update" and events[-3]["status"] == "failed"
    bad = httpx.post(f"{worker.url}/workflows/shipping-quote/run/stream", json={"v": 1})
    assert_error(bad, 400, "unknown param 'v'")
    assert_error(httpx.post(f"{worker.url}/workflows/nope/run/stream"), 404, "not found")


def test_worker_stream_client_disconnect_cancels_the_job(worker, worker_settings) -> None:
    url = f"{worker.url}/workflows/gate-sse/run/stream"
    job_id = None
    with httpx.stream("POST", url, json={"text": "bye"}, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                job_id = event["job_id"]
                running = event.get("type") == "node_update" and event.get("status") == "running"
                if running and event["node_id"] == "g":
                    break
    assert job_id is not None

    async def status() -> str:
        store = await open_store(worker_settings)
        try:
            deadline = time.monotonic() + 30  # a hang guard
            while time.monotonic() < deadline:
                job = await store.jobs.get("1", job_id)
                if job["status"] in ("cancelled", "completed", "failed"):
                    return job["status"]
                await asyncio.sleep(0.02)
            return "still running"
        finally:
            await store.close()

    assert asyncio.run(status()) == "cancelled"


def test_worker_stream_of_a_cancelled_job_ends_with_its_error(worker) -> None:
    """Cancelled elsewhere (`POST /jobs/{id}/cancel`): the stream's error event, then [DONE]."""
    url = f"{worker.url}/workflows/gate-cancel/run/stream"
    events: list[Any] = []
    with httpx.stream("POST", url, json={"text": "x"}, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
            event = events[-1]
            gate_running = isinstance(event, dict) and event.get("node_id") == "g"
            if gate_running and event.get("status") == "running":
                cancel = httpx.post(f"{worker.url}/jobs/{event['job_id']}/cancel")
                assert cancel.status_code == 200, cancel.text
    assert events[-1] == "[DONE]"
    assert events[-2] == {
        "error": {"message": "cancelled", "type": "cancelled", "param": None, "code": "cancelled"}
    }
    assert events[-3]["type"] == "job_update" and events[-3]["status"] == "cancelled"
