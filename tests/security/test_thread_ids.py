"""Thread ids are per user: nothing tells a caller that another user holds a thread id.

Alice and Bob are real Supabase users (stub) of a real editor server on loopback. Bob probes
every thread endpoint and `/chat` with an id Alice holds and with an id nobody holds; the
answers must be the same once the id itself is masked, and Alice's thread must be untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chat_ws_support import chat_client, editor_server
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.servers import ServerThread

VOLATILE = {"id", "created_at", "updated_at"}  # differ between any two rows


@pytest.fixture(scope="module")
def users(openai_stub, tmp_path_factory) -> Iterator[tuple[ServerThread, dict, dict]]:
    with (
        SupabaseStub() as supabase,
        editor_server(
            openai_stub.url,
            tmp_path_factory.mktemp("thread-ids"),
            auth_provider="supabase",
            supabase_url=supabase.url,
            supabase_key=supabase.key,
        ) as server,
    ):
        alice = {"Authorization": f"Bearer {supabase.issue('alice')}"}
        bob = {"Authorization": f"Bearer {supabase.issue('bob')}"}
        yield server, alice, bob


def _masked(value: Any, thread_id: str) -> Any:
    """`value` with the probed id written as `<thread>` and row ids and timestamps blanked."""
    if isinstance(value, dict):
        return {
            key: "<volatile>" if key in VOLATILE else _masked(item, thread_id)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, thread_id) for item in value]
    if isinstance(value, str):
        return value.replace(thread_id, "<thread>")
    return value


def _answer(response: httpx.Response, thread_id: str) -> tuple[int, Any]:
    return response.status_code, _masked(response.json(), thread_id)


def _alice_thread(server: ServerThread, alice: dict) -> str:
    """A thread of Alice's with a client-chosen id and one message in it."""
    thread_id = f"alice-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, headers=alice) as client:
        made = client.post("/api/threads", json={"id": thread_id, "title": "Alice's plans"})
        assert made.status_code == 200, made.text
    return thread_id


def _probe_rest(server: ServerThread, bob: dict, thread_id: str) -> list[tuple[int, Any]]:
    """Bob's answers from every read/change endpoint for `thread_id` (which he does not hold)."""
    with httpx.Client(base_url=server.url, headers=bob) as client:
        return [
            _answer(client.get(f"/api/threads/{thread_id}"), thread_id),
            _answer(client.put(f"/api/threads/{thread_id}", json={"title": "mine"}), thread_id),
            _answer(client.get("/api/messages", params={"thread_id": thread_id}), thread_id),
            _answer(client.delete(f"/api/threads/{thread_id}"), thread_id),
            _answer(client.post("/api/threads", json={"id": thread_id, "title": "t"}), thread_id),
            _answer(client.post("/api/threads", json={"id": thread_id}), thread_id),  # his now
        ]


def test_rest_answers_are_the_same_for_another_users_id_and_an_unknown_id(users) -> None:
    server, alice, bob = users
    taken = _alice_thread(server, alice)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    on_taken = _probe_rest(server, bob, taken)
    on_unknown = _probe_rest(server, bob, unknown)
    assert on_taken == on_unknown
    statuses = [status for status, _ in on_taken]
    assert statuses == [404, 404, 404, 404, 200, 409]  # Bob's create made his own thread
    with httpx.Client(base_url=server.url, headers=alice) as client:
        kept = client.get(f"/api/threads/{taken}").json()
        assert kept["title"] == "Alice's plans"
        assert [t["id"] for t in client.get("/api/threads").json()["threads"]].count(taken) == 1


def test_bob_creating_alices_id_gets_his_own_thread(users) -> None:
    server, alice, bob = users
    taken = _alice_thread(server, alice)
    with httpx.Client(base_url=server.url, headers=alice) as client:
        # (the REST API has no message append; the chat turn below stores Bob's messages)
        assert client.get("/api/messages", params={"thread_id": taken}).json()["messages"] == []
    with httpx.Client(base_url=server.url, headers=bob) as client:
        made = client.post("/api/threads", json={"id": taken, "title": "Bob's"})
        assert made.status_code == 200 and made.json()["title"] == "Bob's"
        assert client.get(f"/api/threads/{taken}").json()["title"] == "Bob's"
        assert client.delete(f"/api/threads/{taken}").status_code == 200
    with httpx.Client(base_url=server.url, headers=alice) as client:
        assert client.get(f"/api/threads/{taken}").json()["title"] == "Alice's plans"


async def test_chat_answers_the_same_and_never_shows_another_users_messages(
    users, openai_stub
) -> None:
    server, alice, bob = users
    taken = f"alice-{uuid.uuid4().hex[:8]}"
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    async with chat_client(server, additional_headers=alice) as client:
        await client.chat("alice's secret", thread_id=taken)
    openai_stub.reset()
    async with chat_client(server, additional_headers=bob) as client:
        on_taken = _masked(await client.chat("bob speaks", thread_id=taken), taken)
        on_unknown = _masked(await client.chat("bob speaks", thread_id=unknown), unknown)
    assert on_taken == on_unknown
    assert [f for f in on_taken if f["type"] == "error"] == []
    # the model was shown Bob's message alone, both times
    assert [[m["content"] for m in r["messages"]] for r in openai_stub.requests] == [
        ["bob speaks"],
        ["bob speaks"],
    ]
    with httpx.Client(base_url=server.url) as client:
        theirs = client.get("/api/messages", params={"thread_id": taken}, headers=alice).json()
        mine = client.get("/api/messages", params={"thread_id": taken}, headers=bob).json()
    assert [m["content"] for m in theirs["messages"]] == ["alice's secret", "Echo: alice's secret"]
    assert [m["content"] for m in mine["messages"]] == ["bob speaks", "Echo: bob speaks"]
