"""Workflow ids are per user: nothing tells a caller that another user holds a workflow id.

Alice and Bob are real Supabase users (stub) of a real editor server on loopback. Bob probes
every workflow endpoint (REST and `/predict`) with an id Alice holds and with an id nobody
holds; the answers must be the same once the id itself is masked, and Alice's workflow must be
untouched. Bob may then save a workflow under Alice's id, and each one's jobs run their own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.chat_ws_support import editor_server
from tests.security.workflow_support import one_node_graph
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.servers import ServerThread

VOLATILE = {"id", "created_at", "updated_at"}  # differ between any two rows
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def users(openai_stub, tmp_path_factory) -> Iterator[tuple[ServerThread, dict, dict]]:
    with (
        SupabaseStub() as supabase,
        editor_server(
            openai_stub.url,
            tmp_path_factory.mktemp("workflow-ids"),
            auth_provider="supabase",
            supabase_url=supabase.url,
            supabase_key=supabase.key,
        ) as server,
    ):
        alice = {"Authorization": f"Bearer {supabase.issue('alice')}"}
        bob = {"Authorization": f"Bearer {supabase.issue('bob')}"}
        yield server, alice, bob


def _masked(value: Any, workflow_id: str) -> Any:
    """`value` with the probed id written as `<workflow>` and row ids and timestamps blanked."""
    if isinstance(value, dict):
        return {
            key: "<volatile>" if key in VOLATILE else _masked(item, workflow_id)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, workflow_id) for item in value]
    if isinstance(value, str):
        return value.replace(workflow_id, "<workflow>")
    return value


def _answer(response: httpx.Response, workflow_id: str) -> tuple[int, Any]:
    return response.status_code, _masked(response.json(), workflow_id)


def _workflow(workflow_id: str, name: str, secret: str) -> dict[str, Any]:
    graph = one_node_graph("nodetool.constant.String", value=secret)
    return {"id": workflow_id, "name": name, "graph": graph}


def _alice_workflow(server: ServerThread, alice: dict) -> str:
    """A workflow of Alice's with a client-chosen id."""
    workflow_id = f"alice-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, headers=alice) as client:
        made = client.post("/api/workflows", json=_workflow(workflow_id, "Alice's", "hers"))
        assert made.status_code == 201, made.text
    return workflow_id


def _predict(server: ServerThread, headers: dict, command: str, **data: Any) -> dict[str, Any]:
    """The reply to one `/predict` command (JSON frames)."""
    url = f"ws://127.0.0.1:{server.port}/predict"
    with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"command": command, "data": data}))
        return json.loads(ws.recv(timeout=TIMEOUT))


def _probe(server: ServerThread, bob: dict, workflow_id: str) -> list[tuple[int, Any]]:
    """Bob's answers from every workflow endpoint for `workflow_id` (which he does not hold);
    the last two save it, so it is his afterwards."""
    body = _workflow(workflow_id, "Bob's", "his")
    with httpx.Client(base_url=server.url, headers=bob) as client:
        answers = [
            _answer(client.get(f"/api/workflows/{workflow_id}"), workflow_id),
            _answer(client.delete(f"/api/workflows/{workflow_id}"), workflow_id),
            _answer(client.post(f"/api/workflows/{workflow_id}/run", json={}), workflow_id),
            _answer(client.get("/api/jobs", params={"workflow_id": workflow_id}), workflow_id),
            _answer(client.get("/api/workflows"), workflow_id),
        ]
        frame = _predict(server, bob, "run_job", workflow_id=workflow_id, params={})
        answers.append((0, _masked(frame, workflow_id)))
        answers.append(_answer(client.post("/api/workflows", json=body), workflow_id))
        answers.append(_answer(client.put(f"/api/workflows/{workflow_id}", json=body), workflow_id))
    return answers


def _run(server: ServerThread, headers: dict, workflow_id: str) -> dict[str, Any]:
    """Run the caller's workflow `workflow_id` to its end; the job record."""
    with httpx.Client(base_url=server.url, headers=headers, timeout=TIMEOUT) as client:
        started = client.post(f"/api/workflows/{workflow_id}/run", json={})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            record = client.get(f"/api/jobs/{job_id}").json()
            if record["status"] in ("completed", "failed", "cancelled"):
                return record
            time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_answers_are_the_same_for_another_users_id_and_an_unknown_id(users) -> None:
    server, alice, bob = users
    taken = _alice_workflow(server, alice)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    on_taken = _probe(server, bob, taken)
    on_unknown = _probe(server, bob, unknown)
    assert on_taken[:4] == on_unknown[:4] and on_taken[5:] == on_unknown[5:]
    # his list: empty at the first probe, his own saved workflow at the second
    assert on_taken[4] == (200, {"workflows": []})
    assert on_unknown[4][1]["workflows"][0]["name"] == "Bob's"
    statuses = [status for status, _ in on_taken]
    assert statuses == [404, 404, 404, 200, 200, 0, 201, 200]  # the saves made his own
    assert on_taken[5][1]["type"] == "error" and "not found" in on_taken[5][1]["message"]
    with httpx.Client(base_url=server.url, headers=alice) as client:
        kept = client.get(f"/api/workflows/{taken}").json()
        assert kept["name"] == "Alice's" and kept["user_id"] == "alice"
        listed = [w["id"] for w in client.get("/api/workflows").json()["workflows"]]
        assert listed.count(taken) == 1


def test_each_users_jobs_run_their_own_workflow_of_the_same_id(users) -> None:
    server, alice, bob = users
    taken = _alice_workflow(server, alice)
    with httpx.Client(base_url=server.url, headers=bob) as client:
        made = client.post("/api/workflows", json=_workflow(taken, "Bob's", "his"))
        assert made.status_code == 201 and made.json()["user_id"] == "bob", made.text
    bobs, alices = _run(server, bob, taken), _run(server, alice, taken)
    assert (bobs["status"], bobs["results"]) == ("completed", {"out": "his"}), bobs
    assert (alices["status"], alices["results"]) == ("completed", {"out": "hers"}), alices
    frame = _predict(server, bob, "run_job", workflow_id=taken, params={})
    assert frame["type"] == "command_result" and frame["ok"] is True, frame
    for headers, job in ((alice, alices), (bob, bobs)):
        with httpx.Client(base_url=server.url, headers=headers) as client:
            listed = client.get("/api/jobs", params={"workflow_id": taken}).json()["jobs"]
            assert job["id"] in [j["id"] for j in listed]
            other = bobs if job is alices else alices
            assert other["id"] not in [j["id"] for j in listed]
            assert client.get(f"/api/jobs/{other['id']}").status_code == 404
    with httpx.Client(base_url=server.url, headers=bob) as client:
        assert client.delete(f"/api/workflows/{taken}").status_code == 200
    with httpx.Client(base_url=server.url, headers=alice) as client:
        assert client.get(f"/api/workflows/{taken}").json()["name"] == "Alice's"
