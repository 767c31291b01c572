"""Stored workflows as `workflow_<tool_name>` tools (`workflows/as_tool.py`), run by the real
job manager on SQLite; their arguments described by the input node classes; and the registry's
name validation."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nodetool.chat.engine import ChatEngine, TurnRequest
from nodetool.config import Settings
from nodetool.errors import InvalidRequestError, ToolError
from nodetool.storage import open_store
from nodetool.tools.base import ToolContext
from nodetool.tools.registry import ToolRegistry, build_tool_registry
from nodetool.types.events import ToolResultEvent
from nodetool.types.messages import FunctionCall, Message, ToolCall
from nodetool.workflows.as_tool import WorkflowTool, WorkflowTools, args_model, tool_name_of
from nodetool.workflows.jobs import JobManager
from tests.fakes import FakeProvider, calls, reply
from tests.support.workflows import EXAMPLES

module_loop = pytest.mark.asyncio(loop_scope="module")  # the store lives on the module's loop


GREETER: dict[str, Any] = {
    "id": "greeter",
    "name": "Greeter",
    "tool_name": "greet",
    "description": "Greets someone several times.",
    "graph": {
        "nodes": [
            {
                "id": "who",
                "type": "nodetool.input.StringInput",
                "data": {"name": "who", "value": "world", "description": "Who to greet"},
            },
            {
                "id": "times",
                "type": "nodetool.input.IntegerInput",
                "data": {"name": "times", "value": 1, "min": 1, "max": 5},
            },
            {
                "id": "mood",
                "type": "nodetool.input.StringInput",
                "data": {"name": "mood", "value": "", "description": "required: no default"},
            },
            {
                "id": "fmt",
                "type": "nodetool.text.FormatText",
                "data": {"template": "Hello {{ who }} x{{ times }} ({{ mood }})"},
                "dynamic_properties": {"who": "", "times": 0, "mood": ""},
            },
            {"id": "out", "type": "nodetool.output.Output", "data": {"name": "greeting"}},
        ],
        "edges": [
            {"source": "who", "sourceHandle": "output", "target": "fmt", "targetHandle": "who"},
            {
                "source": "times",
                "sourceHandle": "output",
                "target": "fmt",
                "targetHandle": "times",
            },
            {"source": "mood", "sourceHandle": "output", "target": "fmt", "targetHandle": "mood"},
            {"source": "fmt", "sourceHandle": "output", "target": "out", "targetHandle": "value"},
        ],
    },
}


def variant(**changes: Any) -> dict[str, Any]:
    workflow = copy.deepcopy(GREETER)
    workflow.update(changes)
    return workflow


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("wf-tools"))


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[tuple[Any, JobManager]]:
    store = await open_store(settings)
    jobs = JobManager(settings, store, None)
    await jobs.start()
    await store.workflows.upsert("alice", GREETER)
    broken = variant(id="broken", tool_name="broken")
    broken["graph"]["nodes"][3]["data"]["template"] = "{{ who "
    await store.workflows.upsert("alice", broken)
    await store.workflows.upsert("alice", variant(id="plain", tool_name=None, name="Plain"))
    await store.workflows.upsert("alice", variant(id="spaced", tool_name="say hi!"))
    await store.workflows.upsert("bob", variant(id="bobs", tool_name="bob_only"))
    try:
        yield store, jobs
    finally:
        await jobs.aclose()
        await store.close()


@pytest.fixture()
def alice(settings: Settings, runtime: tuple[Any, JobManager]) -> ToolContext:
    store, _ = runtime
    return ToolContext(user_id="alice", settings=settings, store=store)


@pytest.fixture()
def family(runtime: tuple[Any, JobManager]) -> WorkflowTools:
    _, jobs = runtime
    return WorkflowTools(jobs)


def test_tool_names() -> None:
    assert tool_name_of(GREETER) == "workflow_greet"
    assert tool_name_of(variant(tool_name="say hi!")) == "workflow_say_hi_"
    assert tool_name_of(variant(tool_name="x" * 100)) == "workflow_" + "x" * 55
    assert tool_name_of(variant(tool_name=None)) is None
    assert tool_name_of(variant(tool_name="  ")) is None


def test_arguments_come_from_the_input_nodes() -> None:
    schema = find_schema(GREETER)
    assert schema["properties"] == {
        "who": {"type": "string", "default": "world", "description": "Who to greet"},
        "times": {"type": "integer", "default": 1, "minimum": 1, "maximum": 5},
        "mood": {"type": "string", "description": "required: no default"},
    }
    assert schema["required"] == ["mood"]
    assert schema["additionalProperties"] is False


def find_schema(workflow: dict[str, Any]) -> dict[str, Any]:
    return WorkflowTool(workflow, None).parameters()


def test_an_example_workflow() -> None:
    workflow = json.loads((EXAMPLES / "Shipping Quote.json").read_text())
    workflow["tool_name"] = "quote"
    schema = find_schema(workflow)
    weight = schema["properties"]["weight"]
    assert (weight["type"], weight["minimum"], weight["maximum"], weight["default"]) == (
        "integer",
        0,
        1000,
        5,
    )
    model = args_model(workflow)
    assert model.model_validate({"weight": "42"}).model_dump(by_alias=True) == {"weight": 42}


@module_loop
async def test_listing_is_per_user(alice: ToolContext, family: WorkflowTools) -> None:
    names = sorted(tool.name for tool in await family.list(alice))
    assert names == ["workflow_broken", "workflow_greet", "workflow_say_hi_"]
    bob = ToolContext(user_id="bob", settings=alice.settings, store=alice.store)
    assert [tool.name for tool in await family.list(bob)] == ["workflow_bob_only"]
    assert await family.find("workflow_bob_only", alice) is None
    assert await family.find("calculator", alice) is None
    storeless = ToolContext(user_id="alice", settings=alice.settings)
    assert await family.list(storeless) == [] and await family.every(storeless) == []
    tool = await family.find("workflow_greet", alice)
    assert tool is not None and "Greets someone" in tool.description


def execute_call(name: str) -> ToolCall:
    return ToolCall(id="w1", function=FunctionCall(name=name, arguments="{}"))


@module_loop
async def test_runs_through_the_job_manager(alice: ToolContext, family: WorkflowTools) -> None:
    registry = ToolRegistry(["*"], workflows=family)
    (tool,) = await registry.resolve(["workflow_greet"], alice)
    tools = {tool.name: tool}
    outcome = await registry.execute(
        execute_call("workflow_greet"),
        {"who": "Ada", "times": "3", "mood": "cheerful"},
        alice,
        tools,
    )
    assert outcome.ok, outcome.error
    assert outcome.result == {"greeting": "Hello Ada x3 (cheerful)"}
    defaults = await registry.execute(
        execute_call("workflow_greet"), {"mood": "calm"}, alice, tools
    )
    assert defaults.result == {"greeting": "Hello world x1 (calm)"}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"who": "Ada"}, "invalid arguments: mood"),
        ({"mood": "x", "times": 9}, "invalid arguments: times"),
        ({"mood": "x", "times": "many"}, "invalid arguments: times"),
        ({"mood": "x", "extra": 1}, "invalid arguments: extra"),
    ],
)
@module_loop
async def test_bad_arguments(
    alice: ToolContext, family: WorkflowTools, args: dict[str, Any], reason: str
) -> None:
    registry = ToolRegistry(["*"], workflows=family)
    (tool,) = await registry.resolve(["workflow_greet"], alice)
    outcome = await registry.execute(execute_call(tool.name), args, alice, {tool.name: tool})
    assert not outcome.ok and (outcome.error or "").startswith(reason)


@module_loop
async def test_a_failing_workflow_is_an_error_result(
    alice: ToolContext, family: WorkflowTools
) -> None:
    registry = ToolRegistry(["*"], workflows=family)
    (tool,) = await registry.resolve(["workflow_broken"], alice)
    outcome = await registry.execute(
        execute_call(tool.name), {"mood": "x"}, alice, {tool.name: tool}
    )
    assert not outcome.ok and (outcome.error or "").startswith("workflow failed")


@module_loop
async def test_without_a_job_manager(alice: ToolContext) -> None:
    without_jobs = WorkflowTools(None)
    tool = await without_jobs.find("workflow_greet", alice)
    assert tool is not None
    with pytest.raises(ToolError) as info:
        await tool.run(alice, tool.Args.model_validate({"mood": "x"}))
    assert "not available" in info.value.message
    assert await without_jobs.every(alice) == []  # MCP offers no workflow it cannot run


@module_loop
async def test_unknown_workflow_tool_is_a_clear_400(
    alice: ToolContext, family: WorkflowTools
) -> None:
    for registry in (ToolRegistry(["*"], workflows=family), ToolRegistry(["*"])):
        with pytest.raises(InvalidRequestError) as info:
            await registry.resolve(["workflow_nope"], alice)
        assert info.value.param == "tools" and "workflow_nope" in info.value.message


@module_loop
async def test_in_the_engine_loop(
    settings: Settings, runtime: tuple[Any, JobManager], family: WorkflowTools
) -> None:
    store, _ = runtime
    contexts: list[tuple[str, str | None]] = []

    def tool_context(user_id: str, thread_id: str | None) -> ToolContext:
        contexts.append((user_id, thread_id))
        return ToolContext(user_id=user_id, settings=settings, store=store, thread_id=thread_id)

    registry = build_tool_registry(settings, family)
    engine = ChatEngine(settings, None, registry, tool_context=tool_context)  # type: ignore[arg-type]
    fake = FakeProvider().enqueue(
        calls(("workflow_greet", {"who": "Grace", "mood": "happy"})), reply("Greeted.")
    )
    req = TurnRequest(
        messages=[Message(role="user", content="greet Grace")],
        server_tools=["calculator", "workflow_greet"],
        user_id="alice",
        thread_id="t1",
    )
    events = [e async for e in engine.stream_turn(req, route=(fake, "fake-model"))]
    assert fake.requests[0].tool_names == ["calculator", "workflow_greet"]
    (result,) = [e for e in events if isinstance(e, ToolResultEvent)]
    assert result.ok and result.result == {"greeting": "Hello Grace x1 (happy)"}
    assert json.loads(fake.requests[1].last("tool")[0].content) == result.result  # type: ignore[arg-type]
    assert contexts and set(contexts) == {("alice", "t1")}  # the engine's factory made them


def test_build_tool_registry_refuses_unknown_names(tmp_path: Path) -> None:
    good = build_tool_registry(Settings(data_dir=tmp_path, tools=["calculator", "http_get"]), None)
    assert good.names() == [
        "calculator",
        "current_time",
        "http_get",
        "list_directory",
        "read_file",
        "write_file",
    ]
    with pytest.raises(InvalidRequestError) as info:
        build_tool_registry(Settings(data_dir=tmp_path, tools=["calculator", "teleport"]), None)
    assert info.value.param == "tools"
    assert "teleport" in info.value.message and "calculator" in info.value.message
