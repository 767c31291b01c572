"""`/api/threads` and `/api/messages` over real HTTP (uvicorn on loopback, httpx client).

The app here mounts only the threads router with the real error handlers and a store opened
in its lifespan. Users are chosen per request by a tiny test middleware (header `X-User`)
standing in for the auth layer, which puts the user id in `scope["state"]` the same way.
Messages are written through a second store opened on the same SQLite file.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from nodetool.api.errors import install_error_handlers
from nodetool.api.routes.threads import router
from nodetool.config import Settings
from nodetool.runtime import Runtime
from nodetool.storage import Store, open_store
from tests.support.servers import serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")


class UserFromHeader:
    """Test stand-in for the auth middleware: `X-User` header -> scope state user_id."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            scope.setdefault("state", {})["user_id"] = headers.get(b"x-user", b"1").decode()
        await self.app(scope, receive, send)


def build_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        app.state.runtime = Runtime(settings, store=store)
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(UserFromHeader)
    return app


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("rest") / "data", _env_file=None)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with serve_app(build_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
async def writer(settings: Settings, base_url: str) -> AsyncIterator[Store]:
    store = await open_store(settings)  # after the server migrated the database
    yield store
    await store.close()


@pytest.fixture()
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base_url, headers={"X-User": user}) as http:
        http.user = user  # type: ignore[attr-defined]
        yield http


@pytest.fixture()
async def stranger(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, headers={"X-User": "stranger"}) as http:
        yield http


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    return error


async def test_create_thread_with_and_without_body(client: httpx.AsyncClient) -> None:
    bare = await client.post("/api/threads")
    assert bare.status_code == 200
    assert set(bare.json()) == {"id", "title", "created_at", "updated_at"}
    chosen = f"t-{uuid.uuid4().hex}"
    named = await client.post("/api/threads", json={"id": chosen, "title": "Hello"})
    assert named.json()["id"] == chosen and named.json()["title"] == "Hello"
    assert (await client.get(f"/api/threads/{chosen}")).json() == named.json()
    assert_error(await client.post("/api/threads", json={"id": chosen}), 409, "id")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "x" * 129}, "id"),
        ({"id": ""}, "id"),
        ({"id": " spaced"}, "id"),
        ({"title": 123}, "title"),
        ({"title": "t" * 1001}, "title"),
        ([1, 2], None),
    ],
)
async def test_create_thread_validation_is_a_400(client: httpx.AsyncClient, body, param) -> None:
    assert_error(await client.post("/api/threads", json=body), 400, param)


async def test_create_thread_rejects_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/threads", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400)


async def test_list_threads_pages_newest_first(client: httpx.AsyncClient) -> None:
    made = [(await client.post("/api/threads", json={"title": f"t{i}"})).json() for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/threads", params=params)).json()
        seen += [t["id"] for t in body["threads"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [t["id"] for t in reversed(made)]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": "many"}, "limit"), ({"cursor": "garbage"}, "cursor")],
)
async def test_list_threads_bad_query_is_a_400(client: httpx.AsyncClient, params, param) -> None:
    assert_error(await client.get("/api/threads", params=params), 400, param)


async def test_rename_and_delete_thread(client: httpx.AsyncClient, writer: Store) -> None:
    thread = (await client.post("/api/threads", json={"title": "old"})).json()
    message = await writer.messages.add(
        client.user, thread["id"], {"role": "user", "content": "bye"}
    )
    renamed = await client.put(f"/api/threads/{thread['id']}", json={"title": "new"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "new"
    assert_error(await client.put(f"/api/threads/{thread['id']}", json={}), 400, "title")

    deleted = await client.delete(f"/api/threads/{thread['id']}")
    assert deleted.json() == {"id": thread["id"], "object": "thread.deleted", "deleted": True}
    assert_error(await client.get(f"/api/threads/{thread['id']}"), 404)
    assert_error(await client.get(f"/api/messages/{message['id']}"), 404)
    assert_error(await client.delete(f"/api/threads/{thread['id']}"), 404)


async def test_other_users_threads_are_404(
    client: httpx.AsyncClient, stranger: httpx.AsyncClient, writer: Store
) -> None:
    thread = (await client.post("/api/threads", json={"title": "mine"})).json()
    message = await writer.messages.add(client.user, thread["id"], {"role": "user", "content": "s"})
    path = f"/api/threads/{thread['id']}"
    assert_error(await stranger.get(path), 404)
    assert_error(await stranger.put(path, json={"title": "taken"}), 404)
    assert_error(await stranger.delete(path), 404)
    assert_error(await stranger.get("/api/messages", params={"thread_id": thread["id"]}), 404)
    assert_error(await stranger.get(f"/api/messages/{message['id']}"), 404)
    listed = (await stranger.get("/api/threads", params={"limit": 200})).json()["threads"]
    assert thread["id"] not in {t["id"] for t in listed}
    assert (await client.get(path)).json()["title"] == "mine"


async def test_messages_list_oldest_first_with_content_as_sent(
    client: httpx.AsyncClient, writer: Store
) -> None:
    thread = (await client.post("/api/threads")).json()
    parts = [{"type": "text", "text": "part"}]
    sent = [
        {"role": "user", "content": "a string stays a string"},
        {"role": "user", "content": parts},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f"},
    ] + [{"role": "user", "content": f"m{i}"} for i in range(5)]
    added = [await writer.messages.add(client.user, thread["id"], m) for m in sent]

    seen, cursor = [], None
    while True:
        params = {"thread_id": thread["id"], "limit": 4, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/messages", params=params)
        assert response.status_code == 200
        seen += response.json()["messages"]
        cursor = response.json()["next"]
        if cursor is None:
            break
    assert seen == added
    assert seen[0]["content"] == "a string stays a string" and seen[1]["content"] == parts
    one = await client.get(f"/api/messages/{added[2]['id']}")
    assert one.json() == added[2] and one.json()["tool_calls"][0]["id"] == "c1"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "thread_id"),
        ({"thread_id": ""}, "thread_id"),
        ({"thread_id": "t", "limit": 5000}, "limit"),
    ],
)
async def test_messages_bad_query_is_a_400(client: httpx.AsyncClient, params, param) -> None:
    assert_error(await client.get("/api/messages", params=params), 400, param)


async def test_unknown_thread_and_message_are_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/messages", params={"thread_id": "nope"}), 404)
    assert_error(await client.get("/api/messages/nope"), 404)
    assert_error(await client.get("/api/threads/nope"), 404)
