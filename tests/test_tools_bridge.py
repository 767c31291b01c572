"""ClientToolBridge on its own and inside the engine's tool loop (the /chat client tools)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from nodetool.chat.engine import ChatEngine, TurnRequest
from nodetool.config import Settings
from nodetool.tools.base import ToolOutcome
from nodetool.tools.builtins import builtin_tools
from nodetool.tools.client_bridge import ClientToolBridge
from nodetool.tools.registry import ToolRegistry
from nodetool.types.events import Done, MessageEvent, ToolCallStarted, ToolResultEvent
from nodetool.types.messages import FunctionCall, Message, ToolCall, ToolSpec
from tests.fakes import FakeProvider, calls, reply

LOOKUP = ToolSpec(name="lookup", parameters={"type": "object", "properties": {}})
GUARD = 5.0  # deadlock guard for waits that must end; never a timing assertion


def tool_call(call_id: str, name: str = "lookup") -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments="{}"))


async def until_pending(bridge: ClientToolBridge, call_id: str) -> None:
    async with asyncio.timeout(GUARD):
        while call_id not in bridge.pending():
            await asyncio.sleep(0)


# ---- the bridge alone ----------------------------------------------------------------------


async def test_answer_while_waiting() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    task = asyncio.create_task(bridge.run(tool_call("c1"), {}))
    await until_pending(bridge, "c1")
    assert bridge.resolve("c1", True, {"temp": 21})
    outcome = await task
    assert outcome == ToolOutcome(ok=True, result={"temp": 21})
    assert bridge.pending() == []
    assert not bridge.resolve("c1", True, "again")  # answered already


async def test_early_answer_is_kept_for_run() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    assert bridge.resolve("c2", False, error="no such city")
    assert not bridge.resolve("c2", True, "duplicate")  # the first answer stands
    outcome = await bridge.run(tool_call("c2"), {})
    assert outcome == ToolOutcome(ok=False, error="no such city")


async def test_failure_without_a_message_gets_one() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    bridge.resolve("c3", False)
    outcome = await bridge.run(tool_call("c3"), {})
    assert not outcome.ok and outcome.error == "the client tool failed"


async def test_timeout_is_an_error_outcome() -> None:
    bridge = ClientToolBridge(timeout=0.05)
    outcome = await bridge.run(tool_call("c4"), {})
    assert outcome == ToolOutcome(ok=False, error="client tool lookup timed out after 0.05 s")
    assert not bridge.resolve("c4", True, "too late")  # unknown after the fact
    assert bridge.pending() == []


async def test_cancel_all_ends_every_wait() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    first = asyncio.create_task(bridge.run(tool_call("c5"), {}))
    second = asyncio.create_task(bridge.run(tool_call("c6", "other"), {}))
    await until_pending(bridge, "c5")
    await until_pending(bridge, "c6")
    bridge.resolve("c7", True, "early, for a call of the stopped turn")
    bridge.cancel_all()
    assert (await first).error == "client tool lookup was cancelled"
    assert (await second).error == "client tool other was cancelled"
    assert not bridge.resolve("c5", True, "late")
    # early answers were dropped: a later run of that id waits (and times out) instead
    bridge.timeout = 0.01
    assert not (await bridge.run(tool_call("c7"), {})).ok


async def test_cancelling_the_caller_propagates() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    task = asyncio.create_task(bridge.run(tool_call("c8"), {}))
    await until_pending(bridge, "c8")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bridge.pending() == []


async def test_a_reused_id_can_be_answered_again() -> None:
    bridge = ClientToolBridge(timeout=GUARD)
    bridge.resolve("same", True, 1)
    assert (await bridge.run(tool_call("same"), {})).result == 1
    task = asyncio.create_task(bridge.run(tool_call("same"), {}))
    await until_pending(bridge, "same")
    assert bridge.resolve("same", True, 2)
    assert (await task).result == 2


# ---- inside the engine ---------------------------------------------------------------------


@pytest.fixture()
def engine(tmp_path: Path) -> ChatEngine:
    registry = ToolRegistry(["*"])
    for tool in builtin_tools():
        registry.register(tool)
    return ChatEngine(Settings(data_dir=tmp_path), providers=None, tools=registry)  # type: ignore[arg-type]


async def bridged_turn(
    engine: ChatEngine, fake: FakeProvider, runner: Any, on_call: Any = None
) -> list[Any]:
    req = TurnRequest(
        messages=[Message(role="user", content="hi")],
        server_tools=["calculator"],
        client_tools=[LOOKUP],
        client_tool_runner=runner,
    )
    events = []
    async for event in engine.stream_turn(req, route=(fake, "fake-model")):
        events.append(event)
        if on_call is not None and isinstance(event, ToolCallStarted):
            await on_call(event)
    return events


def fed_back(fake: FakeProvider, request: int) -> list[Any]:
    return [json.loads(m.content) for m in fake.requests[request].last("tool")]  # type: ignore[arg-type]


async def test_bridged_call_answered_by_the_client(engine: ChatEngine) -> None:
    fake = FakeProvider().enqueue(
        calls(("lookup", {"q": "x"}), ("calculator", {"expression": "2 + 2"})), reply("done")
    )
    bridge = ClientToolBridge(timeout=GUARD)
    answers: list[asyncio.Task[None]] = []

    async def answer_later(started: ToolCallStarted) -> None:
        if started.target == "client":
            # answer from "the socket" once the engine is actually waiting
            async def respond() -> None:
                await until_pending(bridge, started.call.id)
                assert bridge.resolve(started.call.id, True, {"found": b"\x00\x01"})

            answers.append(asyncio.create_task(respond()))

    events = await bridged_turn(engine, fake, bridge.run, answer_later)
    await asyncio.gather(*answers)
    started = ToolCallStarted
    assert [(e.call.name, e.target, e.args) for e in events if isinstance(e, started)] == [
        ("lookup", "client", {"q": "x"}),
        ("calculator", "server", {"expression": "2 + 2"}),
    ]
    results = {r.name: r for r in events if isinstance(r, ToolResultEvent)}
    assert results["lookup"].ok
    assert results["lookup"].result["found"]["type"] == "bytes"  # made JSON-safe
    assert fed_back(fake, 1)[1] == 4
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    assert [e.message.content for e in events if isinstance(e, MessageEvent)][-1] == "done"


async def test_bridged_early_answer(engine: ChatEngine) -> None:
    fake = FakeProvider().enqueue(calls(("lookup", {})), reply("thanks"))
    bridge = ClientToolBridge(timeout=GUARD)

    async def answer_at_once(started: ToolCallStarted) -> None:
        # the answer arrives before the engine starts waiting for it
        assert started.call.id not in bridge.pending()
        assert bridge.resolve(started.call.id, True, "sunny")

    events = await bridged_turn(engine, fake, bridge.run, answer_at_once)
    (result,) = [e for e in events if isinstance(e, ToolResultEvent)]
    assert result.ok and result.result == "sunny"
    assert fake.requests[1].last("tool")[0].content == "sunny"


async def test_bridged_timeout_reaches_the_model(engine: ChatEngine) -> None:
    fake = FakeProvider().enqueue(calls(("lookup", {})), reply("the client did not answer"))
    bridge = ClientToolBridge(timeout=0.05)
    events = await bridged_turn(engine, fake, bridge.run)
    error = "client tool lookup timed out after 0.05 s"
    assert fed_back(fake, 1) == [{"ok": False, "error": error}]
    assert isinstance(events[-1], Done)


async def test_bridged_cancel_reaches_the_model(engine: ChatEngine) -> None:
    fake = FakeProvider().enqueue(calls(("lookup", {})), reply("cancelled"))
    bridge = ClientToolBridge(timeout=GUARD)
    cancellers: list[asyncio.Task[None]] = []

    async def cancel_when_waiting(started: ToolCallStarted) -> None:
        async def cancel() -> None:
            await until_pending(bridge, started.call.id)
            bridge.cancel_all()

        cancellers.append(asyncio.create_task(cancel()))

    await bridged_turn(engine, fake, bridge.run, cancel_when_waiting)
    await asyncio.gather(*cancellers)
    assert fed_back(fake, 1) == [{"ok": False, "error": "client tool lookup was cancelled"}]


async def test_a_failing_runner_is_an_error_result(engine: ChatEngine) -> None:
    fake = FakeProvider().enqueue(calls(("lookup", {})), reply("ok"))

    async def broken(call: ToolCall, args: dict[str, Any]) -> ToolOutcome:
        raise ConnectionError("socket closed")

    events = await bridged_turn(engine, fake, broken)
    assert fed_back(fake, 1) == [{"ok": False, "error": "client tool lookup failed: socket closed"}]
    assert isinstance(events[-1], Done)
