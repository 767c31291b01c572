"""/chat turns against a real editor app with the OpenAI-compatible stub as upstream:
streaming, persistence and history, stop, a new message during a turn, provider errors."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.chat_ws_support import chat_client, chunks_text, editor_server, of_type
from tests.support.servers import ServerThread

ENCODINGS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]
SLOW = "[[slow:0.2]] one two three four five six seven eight nine ten eleven twelve"


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory) -> Iterator[ServerThread]:
    with editor_server(openai_stub.url, tmp_path_factory.mktemp("chat-ws-turns")) as running:
        yield running


def thread_messages(server: ServerThread, thread_id: str) -> list[dict]:
    response = httpx.get(f"{server.url}/api/messages", params={"thread_id": thread_id})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def assert_one_done_last(frames: list[dict]) -> None:
    done = [f for f in frames if f.get("type") == "chunk" and f["done"]]
    assert len(done) == 1 and frames[-1] is done[0]
    assert done[0]["content"] == ""


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_turn_streams_chunks_then_done_and_message(server, openai_stub, binary) -> None:
    async with chat_client(server, binary) as client:
        await client.send({"role": "user", "content": "Hello world", "model": "stub-model"})
        frames = await client.turn()
    assert chunks_text(frames) == "Echo: Hello world"
    assert len(of_type(frames, "chunk")) >= 3  # streamed, not one block
    assert_one_done_last(frames)
    thread_ids = {f.get("thread_id") for f in frames}
    assert len(thread_ids) == 1 and None not in thread_ids
    (message,) = of_type(frames, "message")
    assert message["role"] == "assistant"
    assert message["content"] == "Echo: Hello world"
    assert message["model"] == "stub-model" and message["provider"] == "openai"
    assert message["id"] and message["created_at"]


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_thread_is_persisted_and_history_reaches_upstream(
    server, openai_stub, binary
) -> None:
    thread_id = f"client-thread-{uuid.uuid4().hex}"
    async with chat_client(server, binary) as client:
        first = await client.chat("My name is Ada", thread_id=thread_id)
        assert {f["thread_id"] for f in first} == {thread_id}
    openai_stub.reset()
    async with chat_client(server, binary) as client:  # a new connection: only the store remembers
        second = await client.chat("What is my name?", thread_id=thread_id)
    assert chunks_text(second) == "Echo: What is my name?"
    sent = openai_stub.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "My name is Ada"),
        ("assistant", "Echo: My name is Ada"),
        ("user", "What is my name?"),
    ]
    stored = thread_messages(server, thread_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "My name is Ada"),
        ("assistant", "Echo: My name is Ada"),
        ("user", "What is my name?"),
        ("assistant", "Echo: What is my name?"),
    ]
    (answer,) = of_type(second, "message")
    assert answer["id"] == stored[-1]["id"]


async def test_message_without_thread_creates_one(server) -> None:
    async with chat_client(server) as client:
        frames = await client.chat("new thread please")
    thread_id = frames[0]["thread_id"]
    response = httpx.get(f"{server.url}/api/threads/{thread_id}")
    assert response.status_code == 200, response.text
    assert [m["role"] for m in thread_messages(server, thread_id)] == ["user", "assistant"]


async def test_wrapped_chat_message_command(server) -> None:
    async with chat_client(server, binary=False) as client:
        await client.send({"command": "chat_message", "data": {"role": "user", "content": "hi"}})
        frames = await client.turn()
    assert chunks_text(frames) == "Echo: hi"


async def test_content_parts_come_back_as_sent(server, openai_stub) -> None:
    parts = [{"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]
    thread_id = f"parts-{uuid.uuid4().hex}"
    async with chat_client(server) as client:
        frames = await client.chat(parts, thread_id=thread_id)
    assert chunks_text(frames) == "Echo: part one part two"
    assert thread_messages(server, thread_id)[0]["content"] == parts


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_stop_mid_stream_saves_partial_text(server, openai_stub, binary) -> None:
    thread_id = f"stop-{uuid.uuid4().hex}"
    async with chat_client(server, binary) as client:
        await client.send({"role": "user", "content": SLOW, "thread_id": thread_id})
        first, _ = await client.until("chunk", done=False)
        await client.send({"type": "stop"})
        _, frames = await client.until("chunk", done=True)
        frames.insert(0, first)
        stopped = of_type(frames, "generation_stopped")
        assert len(stopped) == 1 and stopped[0]["thread_id"] == thread_id
        assert_one_done_last(frames)
        received = chunks_text(frames)
        await client.send({"type": "stop"})  # nothing runs: no second generation_stopped
        await client.assert_alive()
    full = "Echo: one two three four five six seven eight nine ten eleven twelve"
    assert received and full.startswith(received) and received != full
    stored = thread_messages(server, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    partial = stored[1]["content"]
    assert partial.startswith(received) and full.startswith(partial) and partial != full
    (shown,) = of_type(frames, "message")
    assert shown["id"] == stored[1]["id"]


async def test_new_message_during_a_turn_stops_it_first(server, openai_stub) -> None:
    first_thread = f"busy-{uuid.uuid4().hex}"
    async with chat_client(server) as client:
        await client.send({"role": "user", "content": SLOW, "thread_id": first_thread})
        await client.until("chunk", done=False)
        await client.send({"role": "user", "content": "second question"})
        _, stop_frames = await client.until("chunk", done=True)
        second = await client.turn()
    assert len(of_type(stop_frames, "generation_stopped")) == 1
    assert stop_frames[-1]["thread_id"] == first_thread
    assert {f["thread_id"] for f in stop_frames} == {first_thread}
    assert chunks_text(second) == "Echo: second question"
    assert of_type(second, "generation_stopped") == []
    assert_one_done_last(second)
    stored = thread_messages(server, first_thread)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"].startswith("Echo:")


async def test_stopped_turn_history_keeps_working(server, openai_stub) -> None:
    thread_id = f"after-stop-{uuid.uuid4().hex}"
    async with chat_client(server) as client:
        await client.send({"role": "user", "content": SLOW, "thread_id": thread_id})
        await client.until("chunk", done=False)
        await client.send({"type": "stop"})
        await client.turn()
        openai_stub.reset()
        frames = await client.chat("and now?", thread_id=thread_id)
    assert chunks_text(frames) == "Echo: and now?"
    roles = [m["role"] for m in openai_stub.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]


async def test_disconnect_mid_turn_cancels_upstream_and_saves_partial(server, openai_stub) -> None:
    thread_id = f"gone-{uuid.uuid4().hex}"
    async with chat_client(server) as client:
        await client.send({"role": "user", "content": SLOW, "thread_id": thread_id})
        await client.until("chunk", done=False)
        closing = time.monotonic()
    assert openai_stub.wait_disconnect(timeout=10.0, after=closing) is not None
    for _ in range(100):
        stored = thread_messages(server, thread_id)
        if len(stored) == 2:
            break
        await asyncio.sleep(0.05)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"].startswith("Echo:")


@pytest.mark.parametrize("binary", ENCODINGS)
async def test_upstream_error_gives_error_frame_and_done(server, binary) -> None:
    async with chat_client(server, binary) as client:
        frames = await client.chat("[[error:500]] boom")
        (error,) = of_type(frames, "error")
        assert "stub upstream error" in error["message"]
        assert error["thread_id"] == frames[-1]["thread_id"]
        assert_one_done_last(frames)
        assert chunks_text(await client.chat("still here")) == "Echo: still here"


async def test_unknown_model_gives_error_frame_and_done(server) -> None:
    thread_id = f"bad-model-{uuid.uuid4().hex}"
    async with chat_client(server, binary=False) as client:
        frames = await client.chat("hi", model="no-such-model-anywhere", thread_id=thread_id)
        (error,) = of_type(frames, "error")
        assert "no-such-model-anywhere" in error["message"]
        assert error["thread_id"] == thread_id
        assert_one_done_last(frames)
        await client.assert_alive()
    assert thread_messages(server, thread_id) == []  # checked before the user message is saved


async def test_workflow_turn_relays_job_frames_and_answers_with_outputs(server) -> None:
    graph = {
        "nodes": [
            {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
            {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "answer"}},
        ],
        "edges": [
            {"source": "in", "sourceHandle": "output", "target": "out", "targetHandle": "value"}
        ],
    }
    thread_id = f"wf-{uuid.uuid4().hex}"
    async with chat_client(server) as client:
        frames = await client.chat("hello workflow", graph=graph, thread_id=thread_id)
    updates = of_type(frames, "job_update")
    assert updates and updates[-1]["status"] == "completed"
    assert all(f["job_id"] == updates[0]["job_id"] for f in updates)
    outputs = of_type(frames, "output_update")
    assert any(f["output_name"] == "answer" and f["value"] == "hello workflow" for f in outputs)
    assert {f["thread_id"] for f in frames} == {thread_id}
    (message,) = of_type(frames, "message")
    assert message["role"] == "assistant" and message["content"] == "hello workflow"
    assert_one_done_last(frames)
    stored = thread_messages(server, thread_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "hello workflow"),
        ("assistant", "hello workflow"),
    ]


async def test_stored_workflow_turn_feeds_text_by_params_name(server) -> None:
    node = "nodetool.input.StringInput"
    out = "nodetool.output.StringOutput"
    workflow = {
        "name": "Two inputs",
        "graph": {
            "nodes": [
                {"id": "a", "type": node, "data": {"name": "first", "value": "default"}},
                {"id": "b", "type": node, "data": {"name": "second", "value": ""}},
                {"id": "oa", "type": out, "data": {"name": "out_a"}},
                {"id": "ob", "type": out, "data": {"name": "out_b"}},
            ],
            "edges": [
                {"source": "a", "sourceHandle": "output", "target": "oa", "targetHandle": "value"},
                {"source": "b", "sourceHandle": "output", "target": "ob", "targetHandle": "value"},
            ],
        },
    }
    created = httpx.post(f"{server.url}/api/workflows", json=workflow)
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    async with chat_client(server, binary=False) as client:
        frames = await client.chat(
            "from the chat", workflow_id=workflow_id, params={"second": None}
        )
    updates = of_type(frames, "job_update")
    assert updates[-1]["status"] == "completed"
    assert {f["workflow_id"] for f in updates} == {workflow_id}
    (message,) = of_type(frames, "message")
    assert message["content"] == "out_a: default\nout_b: from the chat"
    assert message["workflow_id"] == workflow_id
    assert_one_done_last(frames)


async def test_unknown_workflow_gives_error_frame_and_done(server) -> None:
    async with chat_client(server) as client:
        frames = await client.chat("hi", workflow_id="no-such-workflow")
        (error,) = of_type(frames, "error")
        assert "no-such-workflow" in error["message"]
        assert_one_done_last(frames)
        await client.assert_alive()


async def test_stop_during_a_workflow_turn_cancels_its_job(server) -> None:
    graph = {
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
    async with chat_client(server) as client:
        await client.send({"role": "user", "content": SLOW, "graph": graph})
        running, _ = await client.until("output_update", output_name="chunk")
        await client.send({"type": "stop"})
        _, frames = await client.until("chunk", done=True)
        assert len(of_type(frames, "generation_stopped")) == 1
        await client.assert_alive()
    job = httpx.get(f"{server.url}/api/jobs/{running['job_id']}")
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "cancelled"
