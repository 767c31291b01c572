"""The DAG runner on real graphs: the example workflows (LLM nodes against the OpenAI-compatible
stub), streams, concurrency, node failures and cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import WorkflowError
from nodetool.providers.registry import ProviderRegistry
from nodetool.types.jobs import to_wire
from nodetool.workflows.nodes.base import BaseNode, NodeContext, RunContext
from nodetool.workflows.registry import register
from nodetool.workflows.runner import prepare, run_graph
from tests.stubs.openai_stub import Reply
from tests.support.workflows import EXAMPLES

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXPECTED = {
    1: (
        "## Shipping quote\n\nWeight: 1 kg\nOver 20 kg? False\nUnder 2 kg? True\n"
        "Handling: special handling\n\n"
        "Letter post: 1 kg fits a padded envelope, delivery in 1-2 days."
    ),
    5: (
        "## Shipping quote\n\nWeight: 5 kg\nOver 20 kg? False\nUnder 2 kg? False\n"
        "Handling: standard handling\n\n"
        "Parcel: 5 kg ships as a standard box, delivery in 2-3 days."
    ),
    30: (
        "## Shipping quote\n\nWeight: 30 kg\nOver 20 kg? True\nUnder 2 kg? False\n"
        "Handling: special handling\n\n"
        "Freight: 30 kg travels on a pallet, delivery in 3-5 days."
    ),
}
SHIPPING_NODES = {
    "input_weight",
    "heavy",
    "light",
    "special",
    "handling",
    "freight",
    "letter",
    "parcel",
    "small",
    "service",
    "report",
    "out",
}

_BARRIERS: dict[str, asyncio.Barrier] = {}


@register
class Rendezvous(BaseNode):
    """Test node: finishes only when `parties` Rendezvous nodes of its group run at once."""

    type_name = "tests.runner.Rendezvous"
    inputs = {"group": "", "parties": 2, "value": None}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        barrier = _BARRIERS.setdefault(values["group"], asyncio.Barrier(values["parties"]))
        await asyncio.wait_for(barrier.wait(), 20)  # a deadlock guard, not a timing check
        return values["value"]


_CONDITIONS: dict[str, Any] = {}


@register
class FailWhen(BaseNode):
    """Test node: fails once the named condition (a callable set by the test) holds."""

    type_name = "tests.runner.FailWhen"
    inputs = {"condition": ""}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        check = _CONDITIONS[values["condition"]]
        for _ in range(2000):  # a deadlock guard
            if check():
                raise ValueError("boom")
            await asyncio.sleep(0.01)
        raise AssertionError("condition never held")


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def node(node_id: str, type_: str, sync_mode: str = "on_any", **data: Any) -> dict:
    return {"id": node_id, "type": type_, "data": data, "sync_mode": sync_mode}


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> dict:
    return {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }


@pytest.fixture(scope="module")
async def providers(openai_stub, tmp_path_factory) -> AsyncIterator[ProviderRegistry]:
    settings = Settings(
        openai_base_url=openai_stub.url,
        openai_api_key="sk-test",
        default_provider="openai",
        default_model="stub-model",
        data_dir=tmp_path_factory.mktemp("runner"),
    )
    registry = await ProviderRegistry.create(settings)
    yield registry
    await registry.aclose()


async def run(
    graph: dict, params: dict | None = None, providers: ProviderRegistry | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    context = RunContext(
        emit=lambda e: events.append(to_wire(e)), job_id="j1", workflow_id="w1", providers=providers
    )
    results = await run_graph(prepare(graph, params), context)
    return results, events


def of_type(events: list[dict], kind: str, **match: Any) -> list[dict]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


@pytest.mark.parametrize("weight", [1, 5, 30])
async def test_shipping_quote_exact_text(weight: int) -> None:
    results, events = await run(example("Shipping Quote")["graph"], {"weight": weight})
    assert results == {"quote": EXPECTED[weight]}
    (update,) = of_type(events, "output_update", node_id="out")
    assert update["output_name"] == "quote" and update["value"] == EXPECTED[weight]
    completed = {e["node_id"] for e in of_type(events, "node_update", status="completed")}
    assert completed == SHIPPING_NODES
    assert all(e["job_id"] == "j1" and e["workflow_id"] == "w1" for e in events)


async def test_default_input_value_is_used_without_params() -> None:
    results, _ = await run(example("Shipping Quote")["graph"])
    assert results["quote"] == EXPECTED[5]


async def test_text_and_loop_examples() -> None:
    card, _ = await run(example("Greeting Card")["graph"], {"name": "Bo", "occasion": "Eid"})
    assert card == {
        "card": "Dear Bo,\n\nHappy eid! Enjoy the day.\n\nWarm wishes,\nthe nodetool team"
    }
    table, events = await run(example("Times Table")["graph"], {"number": 3})
    assert table == {"table": "1 x 3 = 3\n2 x 3 = 6\n3 x 3 = 9\n4 x 3 = 12\n5 x 3 = 15"}
    progress = of_type(events, "node_progress", node_id="each")
    assert [(p["progress"], p["total"]) for p in progress] == [(i, 5) for i in range(1, 6)]


async def test_agent_example_against_the_stub(openai_stub, providers) -> None:
    openai_stub.reset()
    params = {"notes": "Ship v2 on Friday.", "audience": "the board"}
    results, events = await run(example("Meeting Brief")["graph"], params, providers)
    brief = results["brief"]
    assert brief.startswith("# Meeting brief for the board\n\n## Summary\nEcho: Summarise these")
    assert "Echo: Summarise these meeting notes in two sentences for the board." in brief
    assert "## Action items\nEcho: List the action items in these meeting notes" in brief
    assert brief.count("Notes:\nShip v2 on Friday.") == 2
    assert len(openai_stub.requests) == 2  # the two agents
    systems = {}
    for request in openai_stub.requests:
        assert request["stream"] is True and request["model"] == "stub-model"
        assert request["max_tokens"] == 300 or request.get("max_completion_tokens") == 300
        systems[request["messages"][0]["content"]] = request["messages"][0]["role"]
    assert systems == {
        "You write short, plain summaries of meetings.": "system",
        "You extract action items from meeting notes.": "system",
    }
    for agent in ("summary", "actions"):
        chunks = of_type(events, "output_update", node_id=agent, output_name="chunk")
        assert len(chunks) > 3
        assert "".join(c["value"] for c in chunks) in brief


async def test_list_generator_streams_items_to_preview(openai_stub, providers) -> None:
    openai_stub.reset()
    openai_stub.enqueue(
        Reply(text="Here you go:\n1. Rain jacket\n2. Walking shoes\n   broken in\n3. Adapter\n")
    )
    results, events = await run(example("Packing List")["graph"], None, providers)
    assert results == {}
    shown = [e["value"] for e in of_type(events, "output_update", node_id="show_items")]
    assert shown == ["Rain jacket", "Walking shoes broken in", "Adapter"]
    (prompt,) = of_type(events, "output_update", node_id="show_prompt")
    assert (
        "Destination: Lisbon in spring\nLength: 4 days" in prompt["value"]
    )  # {{DESTINATION}} matched the destination property case-insensitively, as in NodeTool
    request = openai_stub.requests[-1]
    assert request["messages"][-1]["content"] == prompt["value"]


async def test_list_generator_list_output_and_plain_lines(openai_stub, providers) -> None:
    openai_stub.reset()
    openai_stub.enqueue(Reply(text="red\ngreen\nblue"))
    graph = {
        "nodes": [
            node("g", "nodetool.generators.ListGenerator", prompt="colours"),
            node("o", "nodetool.output.ListOutput", name="colours"),
        ],
        "edges": [edge("g", "o", "value", source_handle="list")],
    }
    results, _ = await run(graph, None, providers)
    assert results == {"colours": ["red", "green", "blue"]}


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ({"type": "language_model", "provider": "openai", "id": "gpt-4o-mini"}, "gpt-4o-mini"),
        ({"type": "language_model", "provider": "anthropic", "id": "claude-3"}, "stub-model"),
        ({"type": "language_model", "provider": "empty", "id": ""}, "stub-model"),
        ("openai/stub-model-2", "stub-model-2"),
    ],
)
async def test_agent_model_mapping(openai_stub, providers, model: Any, sent: str) -> None:
    openai_stub.reset()
    graph = {
        "nodes": [
            node("a", "nodetool.agents.Agent", prompt="hi", model=model),
            node("o", "nodetool.output.Output", name="answer"),
        ],
        "edges": [edge("a", "o", "value", source_handle="text")],
    }
    results, _ = await run(graph, None, providers)
    assert results == {"answer": "Echo: hi"}
    assert openai_stub.requests[-1]["model"] == sent


async def test_ready_nodes_run_concurrently() -> None:
    graph = {
        "nodes": [
            node("a", "tests.runner.Rendezvous", group="g1", value="A"),
            node("b", "tests.runner.Rendezvous", group="g1", value="B"),
            node("f", "nodetool.text.FormatText", template="{{ x }}{{ y }}"),
            node("o", "nodetool.output.StringOutput", name="both"),
        ],
        "edges": [edge("a", "f", "x"), edge("b", "f", "y"), edge("f", "o", "value")],
    }
    results, _ = await run(graph)
    assert results == {"both": "AB"}


async def test_foreach_collect_and_zip_all() -> None:
    graph = {
        "nodes": [
            node("l", "nodetool.constant.List", value=["a", "b", "c"]),
            node("each", "nodetool.control.ForEach"),
            node("f", "nodetool.text.FormatText", "zip_all", template="{{ i }}:{{ item|upper }}"),
            node("c", "nodetool.control.Collect"),
            node("o", "nodetool.output.ListOutput", name="items"),
        ],
        "edges": [
            edge("l", "each", "input_list"),
            edge("each", "f", "item"),
            edge("each", "f", "i", source_handle="index"),
            edge("f", "c", "input_item"),
            edge("c", "o", "value"),
        ],
    }
    results, events = await run(graph)
    assert results == {"items": ["0:A", "1:B", "2:C"]}
    progress = of_type(events, "node_progress", node_id="each")
    assert [(p["progress"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]


async def test_stream_into_output_collects_a_list_and_empty_streams_skip() -> None:
    graph = {
        "nodes": [
            node("l", "nodetool.constant.List", value=[1, 2]),
            node("each", "nodetool.control.ForEach"),
            node("m", "nodetool.math.Multiply", b=10),
            node("o", "nodetool.output.Output", name="tens"),
        ],
        "edges": [edge("l", "each", "input_list"), edge("each", "m", "a"), edge("m", "o", "value")],
    }
    results, _ = await run(graph)
    assert results == {"tens": [10, 20]}
    graph["nodes"][0]["data"]["value"] = []
    results, events = await run(graph)
    assert results == {}
    assert {e["node_id"] for e in of_type(events, "node_update", status="skipped")} == {"m", "o"}


async def test_node_failure_fails_the_run_with_node_id_and_message() -> None:
    graph = {
        "nodes": [
            node("d", "nodetool.math.Divide", a=1, b=0),
            node("o", "nodetool.output.Output", name="x"),
        ],
        "edges": [edge("d", "o", "value")],
    }
    events: list[dict] = []
    with pytest.raises(WorkflowError) as info:
        await run_graph(prepare(graph), RunContext(emit=lambda e: events.append(to_wire(e))))
    assert info.value.message == "node 'd' (nodetool.math.Divide) failed: division by zero"
    assert info.value.node_id == "d" and info.value.status == 400
    (failed,) = of_type(events, "node_update", status="error")
    assert failed["node_id"] == "d" and failed["error"] == "division by zero"
    assert not of_type(events, "node_update", node_id="o")


async def test_template_errors_fail_the_node() -> None:
    graph = {"nodes": [node("f", "nodetool.text.FormatText", template="{{ oops ")], "edges": []}
    with pytest.raises(WorkflowError, match=r"node 'f' .* failed: template error: "):
        await run(graph)


async def test_a_failure_cancels_the_other_nodes_upstream_calls(openai_stub, providers) -> None:
    openai_stub.reset()
    _CONDITIONS["upstream-called"] = lambda: bool(openai_stub.requests)
    graph = {
        "nodes": [
            node("a", "nodetool.agents.Agent", prompt="[[hang]] wait"),
            node("d", "tests.runner.FailWhen", condition="upstream-called"),
        ],
        "edges": [],
    }
    with pytest.raises(WorkflowError, match="node 'd' .* failed: boom"):
        await run(graph, None, providers)
    assert openai_stub.wait_disconnect(timeout=10) is not None


async def test_cancelling_a_run_closes_the_upstream_request(openai_stub, providers) -> None:
    openai_stub.reset()
    graph = {"nodes": [node("a", "nodetool.agents.Agent", prompt="[[hang]] wait")], "edges": []}
    task = asyncio.create_task(run(graph, None, providers))
    while not openai_stub.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert openai_stub.wait_disconnect(timeout=10) is not None


async def test_models_needed_but_no_providers() -> None:
    graph = {"nodes": [node("a", "nodetool.agents.Agent", prompt="hi")], "edges": []}
    with pytest.raises(WorkflowError, match="needs a language model"):
        await run(graph)


async def test_template_and_constants() -> None:
    graph = {
        "nodes": [
            node("n", "nodetool.constant.Integer", value=3),
            node("d", "nodetool.constant.Dict", value={"who": "world"}),
            node("t", "nodetool.text.Template", string="Hello {{ who }} x{{ n }} {{ other }}"),
            node("o", "nodetool.output.StringOutput", name="text"),
        ],
        "edges": [edge("d", "t", "values"), edge("n", "t", "n"), edge("t", "o", "value")],
    }
    results, _ = await run(graph)
    assert results == {"text": "Hello world x3 {{ other }}"}
