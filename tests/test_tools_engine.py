"""The chat engine's tool loop, driven by the scripted fake provider.

Covers: multi-round loops, concurrent calls of one round (overlap proven with events), the
round cap, error results (unknown tool, bad JSON, bad arguments, exceptions, timeouts),
OpenAI-style client tools, and stopping a turn while its tools run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from nodetool.chat.engine import CAP_NOTICE, ChatEngine, TurnRequest
from nodetool.config import Settings
from nodetool.errors import ProviderError
from nodetool.tools.base import Tool, ToolContext
from nodetool.tools.builtins import builtin_tools
from nodetool.tools.registry import ToolRegistry
from nodetool.types.events import (
    Done,
    Finish,
    MessageEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    ToolResultEvent,
    Usage,
)
from nodetool.types.messages import ChatOptions, Message, ToolSpec
from tests.fakes import FakeProvider, call, calls, reply


class WhoArgs(BaseModel):
    who: str


class BarrierTool(Tool):
    """Two calls that can only both succeed if they run at the same time and results are
    delivered as they finish: `a` waits until `b` has started and the consumer has seen b's
    result (`release`); `b` waits until `a` has started."""

    name = "barrier"
    Args = WhoArgs
    timeout = 5.0

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = {"a": asyncio.Event(), "b": asyncio.Event()}
        self.release = asyncio.Event()

    async def run(self, context: ToolContext, args: BaseModel) -> str:
        who = args.who  # type: ignore[attr-defined]
        self.log.append(f"{who} started")
        self.started[who].set()
        if who == "a":
            await self.started["b"].wait()
            await self.release.wait()
        else:
            await self.started["a"].wait()
        self.log.append(f"{who} done")
        return f"{who} ok"


class EmptyArgs(BaseModel):
    pass


class BoomTool(Tool):
    name = "boom"
    Args = EmptyArgs

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        raise RuntimeError("kaboom")


class HangTool(Tool):
    """Never finishes by itself; records whether it was cancelled."""

    name = "hang"
    Args = EmptyArgs
    timeout = 0.05

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class BlobTool(Tool):
    name = "blob"
    Args = EmptyArgs

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        return {"image": b"\x89PNG\r\n\x1a\n" + b"\x01" * 100_000}


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, max_tool_rounds=3)


@pytest.fixture()
def registry() -> ToolRegistry:
    registry = ToolRegistry(["*"])
    for tool in [*builtin_tools(), BoomTool(), BlobTool()]:
        registry.register(tool)
    return registry


@pytest.fixture()
def fake() -> FakeProvider:
    return FakeProvider()


def engine_for(settings: Settings, registry: ToolRegistry) -> ChatEngine:
    return ChatEngine(settings, providers=None, tools=registry)  # type: ignore[arg-type]


async def run_turn(engine: ChatEngine, fake: FakeProvider, **fields: Any) -> list[Any]:
    fields.setdefault("messages", [Message(role="user", content="hi")])
    req = TurnRequest(**fields)
    return [event async for event in engine.stream_turn(req, route=(fake, "fake-model"))]


def of(events: list[Any], kind: type) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def tool_contents(fake: FakeProvider, request: int) -> list[dict[str, Any] | str]:
    out: list[dict[str, Any] | str] = []
    for message in fake.requests[request].last("tool"):
        try:
            out.append(json.loads(message.content))  # type: ignore[arg-type]
        except json.JSONDecodeError:
            out.append(message.content)  # type: ignore[arg-type]
    return out


async def test_plain_answer(settings: Settings, registry: ToolRegistry, fake: FakeProvider) -> None:
    fake.enqueue(reply("Hello there", chunks=3, usage=(5, 2)))
    events = await run_turn(engine_for(settings, registry), fake)
    assert "".join(e.text for e in of(events, TextDelta)) == "Hello there"
    (final,) = of(events, MessageEvent)
    assert final.message.role == "assistant" and final.message.content == "Hello there"
    assert final.model == "fake-model" and final.provider == "fake"
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.usage == Usage(5, 2)
    assert fake.requests[0].tools is None  # no server tools enabled


async def test_multi_round_loop(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(
        calls(("calculator", {"expression": "6 * 7"}), text="Let me compute. ") + [Usage(3, 1)],
        calls(("current_time", {"timezone": "UTC"})) + [Usage(4, 1)],
        reply("It is 42 o'clock.", usage=(6, 2)),
    )
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["calculator", "current_time"]
    )
    assert len(fake.requests) == 3
    for request in fake.requests:
        assert request.tool_names == ["calculator", "current_time"]
    # round 1 result fed back: the assistant call message, then the tool message
    second = fake.requests[1].messages
    assert second[-2].role == "assistant" and second[-2].content == "Let me compute. "
    assert second[-2].tool_calls[0].name == "calculator"
    assert second[-1].tool_call_id == second[-2].tool_calls[0].id
    assert tool_contents(fake, 1) == [42]
    assert tool_contents(fake, 2)[0]["timezone"] == "UTC"
    assert len(fake.requests[2].messages) == 5  # user, call, result, call, result
    started = of(events, ToolCallStarted)
    assert [(s.call.name, s.args, s.target) for s in started] == [
        ("calculator", {"expression": "6 * 7"}, "server"),
        ("current_time", {"timezone": "UTC"}, "server"),
    ]
    results = of(events, ToolResultEvent)
    assert results[0].ok and results[0].result == 42 and results[0].name == "calculator"
    assert results[0].tool_call_id == started[0].call.id
    roles = [e.message.role for e in of(events, MessageEvent)]
    assert roles == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert of(events, MessageEvent)[-1].message.content == "It is 42 o'clock."
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.usage == Usage(13, 4)
    # no tool-call deltas leak to the edges for server tools
    assert not of(events, ToolCallDelta)


async def test_calls_of_one_round_run_concurrently(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    barrier = BarrierTool()
    registry.register(barrier)
    fake.enqueue(calls(("barrier", {"who": "a"}), ("barrier", {"who": "b"})), reply("both done"))
    req = TurnRequest(messages=[Message(role="user", content="go")], server_tools=["barrier"])
    events = []
    async for event in engine_for(settings, registry).stream_turn(req, route=(fake, "fake-model")):
        events.append(event)
        if isinstance(event, ToolResultEvent) and event.result == "b ok":
            barrier.release.set()
    # sequential runs, or results held back until the round ends, would leave `a` waiting
    # until its timeout: both succeeding proves the overlap
    assert barrier.log == ["a started", "b started", "b done", "a done"]
    results = of(events, ToolResultEvent)
    assert [(r.result, r.ok) for r in results] == [("b ok", True), ("a ok", True)]
    # every call is announced before any result; history keeps the call order
    kinds = [type(e).__name__ for e in events if isinstance(e, ToolCallStarted | ToolResultEvent)]
    assert kinds == ["ToolCallStarted", "ToolCallStarted", "ToolResultEvent", "ToolResultEvent"]
    assert tool_contents(fake, 1) == ["a ok", "b ok"]
    assert of(events, MessageEvent)[-1].message.content == "both done"


async def test_round_cap(settings: Settings, registry: ToolRegistry, fake: FakeProvider) -> None:
    settings.max_tool_rounds = 2
    again = calls(("calculator", {"expression": "1 + 1"}))
    # the model keeps calling; in the capped round it still tries, the engine ignores that
    fake.enqueue(
        again, again, [TextDelta("Final answer."), *call("calculator", {}), Finish("tool_calls")]
    )
    events = await run_turn(
        engine_for(settings, registry),
        fake,
        server_tools=["calculator"],
        options=ChatOptions(tool_choice="auto", parallel_tool_calls=True, temperature=0.1),
    )
    assert len(fake.requests) == 3
    assert fake.requests[0].tool_names == ["calculator"]
    assert fake.requests[1].tool_names == ["calculator"]
    last = fake.requests[2]
    assert last.tools is None
    assert last.messages[-1] == Message(role="system", content=CAP_NOTICE)
    assert last.options.tool_choice is None and last.options.parallel_tool_calls is None
    assert last.options.temperature == 0.1
    assert len(of(events, ToolResultEvent)) == 2
    final = of(events, MessageEvent)[-1].message
    assert final.content == "Final answer." and not final.tool_calls
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"


async def test_forced_tool_choice_applies_to_the_first_round_only(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(calls(("calculator", {"expression": "2"})), reply("done"))
    await run_turn(
        engine_for(settings, registry),
        fake,
        server_tools=["calculator"],
        options=ChatOptions(tool_choice="required"),
    )
    assert fake.requests[0].options.tool_choice == "required"
    assert fake.requests[1].options.tool_choice is None
    assert fake.requests[1].tool_names == ["calculator"]


async def test_error_results_keep_the_turn_going(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(
        calls(
            ("no_such_tool", {}),
            ("calculator", '{"expression": "1 +'),  # truncated JSON
            ("calculator", "[1, 2]"),  # JSON but not an object
            ("calculator", {"expr": "1"}),  # wrong argument name
            ("boom", {}),  # raises
            ("read_file", {"path": "x"}),  # a real tool, but not enabled for this turn
            ("calculator", {"expression": "2 ** 99999"}),  # refused by the tool
        ),
        reply("Sorry, the tools failed."),
    )
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["calculator", "boom"]
    )
    results = of(events, ToolResultEvent)
    assert len(results) == 7 and not any(r.ok for r in results)
    errors = [c["error"] for c in tool_contents(fake, 1)]  # type: ignore[index]
    assert all(c["ok"] is False for c in tool_contents(fake, 1))  # type: ignore[index]
    assert errors[0] == "unknown tool: no_such_tool"
    assert errors[1] == errors[2] == "arguments are not a valid JSON object"
    assert errors[3].startswith("invalid arguments: expression")
    assert errors[4] == "RuntimeError: kaboom"
    assert errors[5] == "unknown tool: read_file"
    assert "exponent too large" in errors[6]
    started = of(events, ToolCallStarted)
    assert started[1].args == {}  # unparseable arguments are announced as {}
    assert of(events, MessageEvent)[-1].message.content == "Sorry, the tools failed."
    assert isinstance(events[-1], Done)


async def test_tool_timeout_is_an_error_result(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    hang = HangTool()
    registry.register(hang)
    fake.enqueue(calls(("hang", {})), reply("gave up"))
    events = await run_turn(engine_for(settings, registry), fake, server_tools=["hang"])
    (result,) = of(events, ToolResultEvent)
    assert not result.ok and result.error == "hang timed out after 0.05 s"
    assert hang.cancelled.is_set()
    assert tool_contents(fake, 1) == [{"ok": False, "error": "hang timed out after 0.05 s"}]


async def test_bytes_results_are_made_json_safe(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(calls(("blob", {})), reply("saved"))
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["blob"], user_id="u7"
    )
    (result,) = of(events, ToolResultEvent)
    image = result.result["image"]
    assert image["type"] == "file" and image["content_type"] == "image/png"
    stored = settings.data_dir / "workspaces" / "u7" / image["path"]
    assert stored.stat().st_size == image["size"]
    assert tool_contents(fake, 1)[0] == {"image": image}


async def test_missing_call_ids_are_made_unique(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    no_id = [*call("calculator", {"expression": "1"}, id=""), *call("calculator", {}, id="")]
    fake.enqueue(no_id, no_id, reply("ok"))
    events = await run_turn(engine_for(settings, registry), fake, server_tools=["calculator"])
    ids = [s.call.id for s in of(events, ToolCallStarted)]
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1]
    tool_ids = [
        e.message.tool_call_id for e in of(events, MessageEvent) if e.message.role == "tool"
    ]
    assert tool_ids == ids


async def test_provider_errors_propagate(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue([TextDelta("par"), ProviderError("upstream broke", provider="fake")])
    with pytest.raises(ProviderError):
        await run_turn(engine_for(settings, registry), fake)


async def test_unknown_server_tool_names_fail_before_streaming(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    from nodetool.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError) as info:
        await run_turn(engine_for(settings, registry), fake, server_tools=["calculater"])
    assert info.value.param == "tools" and "calculater" in info.value.message
    assert not fake.requests


# ---- OpenAI semantics: the client's tools come back as tool_calls ------------------------


LOOKUP = ToolSpec(
    name="lookup",
    description="Look something up",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}},
)


async def test_client_tools_are_returned_as_tool_calls(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(
        [
            *call("calculator", {"expression": "1"}, index=0, id="srv"),
            *call("lookup", {"q": "weather"}, index=1, id="cli"),
            *call("lookup", {"q": "news"}, index=2, id="cli2"),
        ]
    )
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["calculator"], client_tools=[LOOKUP]
    )
    assert fake.requests[0].tool_names == ["calculator", "lookup"]
    deltas = of(events, ToolCallDelta)
    # only the client's calls are shown, re-indexed from 0, id and name on the first delta
    assert [(d.index, d.id, d.name) for d in deltas if d.name] == [
        (0, "cli", "lookup"),
        (1, "cli2", "lookup"),
    ]
    shown_args = "".join(d.arguments for d in deltas if d.index == 0)
    assert json.loads(shown_args) == {"q": "weather"}
    assert not of(events, ToolCallStarted)  # nothing runs on the server
    (message,) = of(events, MessageEvent)
    assert [c.id for c in message.message.tool_calls] == ["cli", "cli2"]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"
    assert len(fake.requests) == 1


async def test_server_round_then_client_tool_call(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    fake.enqueue(
        calls(("calculator", {"expression": "3 * 3"})),
        calls(("lookup", {"q": "9"})),
    )
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["calculator"], client_tools=[LOOKUP]
    )
    assert [s.call.name for s in of(events, ToolCallStarted)] == ["calculator"]
    assert {d.name for d in of(events, ToolCallDelta) if d.name} == {"lookup"}
    assert tool_contents(fake, 1) == [9]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"


async def test_client_tool_shadows_a_server_tool(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    mine = ToolSpec(name="calculator", description="the client's own")
    fake.enqueue(calls(("calculator", {"expression": "1"})))
    events = await run_turn(
        engine_for(settings, registry), fake, server_tools=["calculator"], client_tools=[mine]
    )
    assert fake.requests[0].tool_names == ["calculator"]
    assert fake.requests[0].tools[0].description == "the client's own"  # type: ignore[index]
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"


# ---- stopping ------------------------------------------------------------------------------


async def test_closing_the_turn_cancels_running_tools(
    settings: Settings, registry: ToolRegistry, fake: FakeProvider
) -> None:
    hang = HangTool()
    hang.timeout = 30.0  # type: ignore[misc]
    registry.register(hang)
    fake.enqueue(calls(("hang", {}), ("calculator", {"expression": "1"})))
    req = TurnRequest(
        messages=[Message(role="user", content="x")], server_tools=["hang", "calculator"]
    )
    stream = engine_for(settings, registry).stream_turn(req, route=(fake, "fake-model"))
    async for event in stream:
        if isinstance(event, ToolResultEvent):  # the calculator finished; `hang` is running
            assert hang.entered.is_set()
            break
    await stream.aclose()
    await asyncio.wait_for(hang.cancelled.wait(), 5)  # fails if the tool is left running
    assert len(fake.requests) == 1


class BatchingFake(FakeProvider):
    """The fake provider handing its events over in lists of up to three, as a provider with
    `stream_chat_batches` does (one list per received piece)."""

    async def stream_chat_batches(self, *args: Any, **kwargs: Any) -> Any:
        batch: list[Any] = []
        async for event in self.stream_chat(*args, **kwargs):
            batch.append(event)
            if len(batch) == 3:
                yield batch
                batch = []
        if batch:
            yield batch


async def test_batches_give_the_same_events(settings: Settings, registry: ToolRegistry) -> None:
    script = [
        calls(("calculator", {"expression": "6 * 7"}), text="Let me see."),
        reply("It is 42.", chunks=4, usage=(3, 2)),
    ]
    plain, batching = FakeProvider(), BatchingFake()
    plain.enqueue(*script)
    batching.enqueue(*script)
    req = TurnRequest(messages=[Message(role="user", content="6 * 7?")])
    engine = engine_for(settings, registry)
    expected = [e async for e in engine.stream_turn(req, route=(plain, "fake-model"))]
    batches = [b async for b in engine.stream_turn_batches(req, route=(batching, "fake-model"))]
    assert all(batches)
    flat = [event for batch in batches for event in batch]
    assert [type(e) for e in flat] == [type(e) for e in expected]
    assert of(flat, TextDelta) == of(expected, TextDelta)
    assert flat[-1] == expected[-1] == Done(finish_reason="stop", usage=Usage(3, 2))
    assert [e.message.content for e in of(flat, MessageEvent)] == [
        e.message.content for e in of(expected, MessageEvent)
    ]
    assert len(batches) < len(flat)  # the provider's lists were kept together
