"""The SSE and task responses as ASGI apps, driven directly through `receive`/`send`."""

from __future__ import annotations

import asyncio
import json

from nodetool.api import sse
from nodetool.api.disconnect import SCOPE_KEY, DisconnectSignal
from nodetool.api.http_writes import SEND_NOW_KEY
from nodetool.errors import ProviderError


class Client:
    """The server side of one HTTP exchange: records what is sent; can disconnect."""

    def __init__(self, send_delay: float = 0.0) -> None:
        self.messages: list[dict] = []
        self.gone = asyncio.Event()
        self.send_delay = send_delay

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self.send_delay and message["type"] == "http.response.body":
            await asyncio.sleep(self.send_delay)
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages[1:]).decode()

    @property
    def bodies(self) -> list[dict]:
        return [m for m in self.messages if m["type"] == "http.response.body"]


async def call(response, client: Client) -> None:
    await response({"type": "http"}, client.receive, client.send)


def events(n: int, fail_at: int | None = None, delay: float = 0.0):
    async def gen():
        for i in range(n):
            if i == fail_at:
                raise ProviderError("upstream broke", provider="openai")
            if delay:
                await asyncio.sleep(delay)
            yield f"data: {i}\n\n"

    return gen()


async def test_fast_events_are_sent_in_one_batch() -> None:
    client = Client()
    await call(sse.EventStreamResponse(events(40), keepalive=10), client)
    assert client.status == 200
    assert client.body == "".join(f"data: {i}\n\n" for i in range(40)) + "data: [DONE]\n\n"
    assert len(client.bodies) == 1
    assert client.bodies[-1].get("more_body", False) is False


async def test_slow_client_bounds_the_buffer() -> None:
    client = Client(send_delay=0.001)
    total = sse.MAX_BUFFER * 3
    await call(sse.EventStreamResponse(events(total), keepalive=10), client)
    sizes = [m["body"].count(b"data: ") for m in client.bodies]
    assert sum(sizes) == total + 1
    assert max(sizes) <= sse.MAX_BUFFER + 1


async def test_failure_before_output_keeps_its_status() -> None:
    client = Client()
    await call(sse.EventStreamResponse(events(3, fail_at=0), keepalive=10), client)
    assert client.status == 502
    assert json.loads(client.body)["error"]["message"] == "upstream broke"


async def test_failure_after_output_is_an_error_event_then_done() -> None:
    client = Client()
    await call(sse.EventStreamResponse(events(5, fail_at=2, delay=0.01), keepalive=10), client)
    assert client.status == 200
    *data, error, done = [e for e in client.body.split("\n\n") if e]
    assert data == ["data: 0", "data: 1"]
    assert json.loads(error.removeprefix("data: "))["error"]["type"] == "upstream_error"
    assert done == "data: [DONE]"


async def test_keep_alive_comments_while_idle() -> None:
    client = Client()
    await call(sse.EventStreamResponse(events(2, delay=0.25), keepalive=0.1), client)
    text = client.body
    assert text.startswith(": keep-alive\n\n")
    assert text.index("data: 0") < text.rindex(": keep-alive") < text.index("data: 1")


async def test_disconnect_closes_the_event_source() -> None:
    client = Client()
    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.01)
                yield "data: x\n\n"
        finally:
            closed.set()

    task = asyncio.create_task(call(sse.EventStreamResponse(endless(), keepalive=10), client))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(task, 5)  # returns quietly: the client is gone
    assert closed.is_set()


async def test_task_response_is_cancelled_on_disconnect() -> None:
    client = Client()
    cancelled = asyncio.Event()

    async def work() -> bytes:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"{}"

    task = asyncio.create_task(call(sse.TaskResponse(work()), client))
    await asyncio.sleep(0.02)
    client.gone.set()
    await asyncio.wait_for(task, 5)
    assert cancelled.is_set()
    assert client.messages == []


async def test_task_response_maps_errors() -> None:
    async def work() -> bytes:
        raise ProviderError("nope", provider="openai")

    client = Client()
    await call(sse.TaskResponse(work()), client)
    assert client.status == 502
    assert json.loads(client.body)["error"]["code"] == "upstream_error"


async def test_the_servers_disconnect_signal_cancels_without_receive() -> None:
    """Under nodetool's protocol the scope's signal cancels the work; `receive` is unused."""

    async def unused_receive() -> dict:
        raise AssertionError("receive() must not be awaited when the scope has a signal")

    for fired_before in (False, True):
        signal = DisconnectSignal()
        if fired_before:
            signal.fire()
        cancelled = asyncio.Event()

        async def work(cancelled: asyncio.Event) -> bytes:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return b"{}"

        client = Client()
        scope = {"type": "http", SCOPE_KEY: signal}
        response = sse.TaskResponse(work(cancelled))
        task = asyncio.create_task(response(scope, unused_receive, client.send))
        await asyncio.sleep(0.02)
        signal.fire()
        await asyncio.wait_for(task, 5)
        assert cancelled.is_set()
        assert client.messages == []


class SendNow:
    """A server's `SEND_NOW_KEY` function: takes messages while `paused` is False."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.paused = False
        self.taken = 0

    def __call__(self, message: dict) -> bool:
        if self.paused:
            return False
        self.taken += 1
        self.client.messages.append(message)
        return True


async def call_with(response, client: Client, send_now: SendNow) -> None:
    await response({"type": "http", SEND_NOW_KEY: send_now}, client.receive, client.send)


async def test_events_are_sent_at_once_when_the_server_takes_them() -> None:
    client = Client()
    send_now = SendNow(client)
    await call_with(sse.EventStreamResponse(events(4, delay=0.01), keepalive=10), client, send_now)
    assert client.body == "".join(f"data: {i}\n\n" for i in range(4)) + "data: [DONE]\n\n"
    # the start and a body for each event the producer waited after; the last with the tail,
    # by `send`, as the producer ends
    assert send_now.taken == 4
    assert [m.get("more_body", False) for m in client.bodies] == [True] * 3 + [False]


async def test_a_paused_client_gets_the_events_from_the_writer() -> None:
    client = Client()
    send_now = SendNow(client)
    send_now.paused = True
    response = sse.EventStreamResponse(events(4, delay=0.01), keepalive=0.005)
    await call_with(response, client, send_now)
    assert send_now.taken == 0
    data = [e for e in client.body.split("\n\n") if e and not e.startswith(":")]
    assert data == [f"data: {i}" for i in range(4)] + ["data: [DONE]"]
    assert client.body.startswith(": keep-alive\n\n")  # the writer's keep-alives, too
