"""The DAG runner on real graphs: the NodeTool examples (LLM nodes against the OpenAI-compatible
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
from nodetool.workflows.nodes.base import BaseNode, NodeContext, RunContext
from nodetool.workflows.registry import register
from nodetool.workflows.runner import prepare, run_graph
from tests.stubs.openai_stub import Reply
from tests.support.workflows import EXAMPLES

pytestmark = pytest.mark.asyncio(loop_scope="module")

TAIL = (
    "\n\n**Decision Logic:**\nThis workflow demonstrates:\n- Multiple condition evaluation\n"
    "- Logical operations (OR gate)\n- Conditional branching\n- Multi-path routing\n"
    "- Result aggregation"
)
EXPECTED = {
    30: (
        "## Conditional Logic Decision Result\n\n**Input Value:** 30\n\n**Condition Checks:**\n"
        "- Greater than 100? False\n- Less than 50? True\n- Combined (OR): True\n"
        "- Route Decision: EXTREME_VALUE\n\n**Processing Path:**\n"
        "🔵 LOW VALUE: 30 is less than 50. Standard processing applied." + TAIL
    ),
    75: (
        "## Conditional Logic Decision Result\n\n**Input Value:** 75\n\n**Condition Checks:**\n"
        "- Greater than 100? False\n- Less than 50? False\n- Combined (OR): False\n"
        "- Route Decision: MEDIUM_VALUE\n\n**Processing Path:**\n"
        "🟡 MEDIUM VALUE: 75 is between 50 and 100. Balanced processing selected." + TAIL
    ),
    150: (
        "## Conditional Logic Decision Result\n\n**Input Value:** 150\n\n**Condition Checks:**\n"
        "- Greater than 100? True\n- Less than 50? False\n- Combined (OR): True\n"
        "- Route Decision: EXTREME_VALUE\n\n**Processing Path:**\n"
        "🔴 HIGH VALUE: 150 is greater than 100. Priority processing engaged." + TAIL
    ),
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
    context = RunContext(emit=events.append, job_id="j1", workflow_id="w1", providers=providers)
    results = await run_graph(prepare(graph, params), context)
    return results, events


def of_type(events: list[dict], kind: str, **match: Any) -> list[dict]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


@pytest.mark.parametrize("value", [30, 75, 150])
async def test_conditional_logic_engine_exact_text(value: int) -> None:
    results, events = await run(example("Conditional Logic Engine")["graph"], {"value": value})
    assert results == {"decision_result": EXPECTED[value]}
    (update,) = of_type(events, "output_update", node_id="1")
    assert update["output_name"] == "decision_result" and update["value"] == EXPECTED[value]
    completed = {e["node_id"] for e in of_type(events, "node_update", status="completed")}
    assert completed == {str(i) for i in range(1, 14)}
    assert all(e["job_id"] == "j1" and e["workflow_id"] == "w1" for e in events)


async def test_default_input_value_is_used_without_params() -> None:
    results, _ = await run(example("Conditional Logic Engine")["graph"])
    assert results["decision_result"] == EXPECTED[75]


async def test_agent_examples_against_the_stub(openai_stub, providers) -> None:
    openai_stub.reset()
    results, events = await run(example("Data Validation Pipeline")["graph"], None, providers)
    report = results["validation_report"]
    assert report.startswith("# Data Validation Report\n")
    assert "Echo: Analyze this CSV data and identify:" in report
    assert "2,jane@invalid,35,UK" in report
    (request,) = openai_stub.requests
    assert request["stream"] is True and request["model"] == "stub-model"
    assert request["max_tokens"] == 800 or request.get("max_completion_tokens") == 800
    assert request["messages"][0] == {
        "role": "system",
        "content": "You are a data quality analyst. Identify validation issues in datasets.",
    }
    chunks = of_type(events, "output_update", node_id="3", output_name="chunk")
    assert len(chunks) > 3
    assert "".join(c["value"] for c in chunks) in report


async def test_two_agents_both_feed_the_report(openai_stub, providers) -> None:
    openai_stub.reset()
    params = {"product": "Tea Kettle"}
    results, _ = await run(example("Product Description Generator")["graph"], params, providers)
    text = results["product_descriptions"]
    assert "## Product: Tea Kettle" in text
    assert "Echo: Create a compelling product description for:\nProduct: Tea Kettle" in text
    assert "Echo: Create an SEO-optimized product description for:\nProduct: Tea Kettle" in text
    assert len(openai_stub.requests) == 2
    openai_stub.reset()
    summary, _ = await run(example("Research Paper Summarizer")["graph"], None, providers)
    assert "Echo: Analyze this research paper" in summary["paper_summary"]
    assert "Echo: Provide a technical summary" in summary["paper_summary"]


async def test_list_generator_streams_items_to_preview(openai_stub, providers) -> None:
    openai_stub.reset()
    openai_stub.enqueue(
        Reply(text="Here you go:\n1. The Sky Thief\n2. Cloud Keeper\n   who hides\n3. Last Isle\n")
    )
    results, events = await run(example("Creative Story Ideas")["graph"], None, providers)
    assert results == {}
    shown = [e["value"] for e in of_type(events, "output_update", node_id="preview_stories")]
    assert shown == ["The Sky Thief", "Cloud Keeper who hides", "Last Isle"]
    (prompt,) = of_type(events, "output_update", node_id="preview_prompt")
    assert (
        "Genre: Fantasy\nMain Character: Reluctant Hero\nSetting: Floating Sky Islands"
        in (prompt["value"])
    )  # {{GENRE}} matched the GENRE property case-insensitively, as in NodeTool
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
        await run_graph(prepare(graph), RunContext(emit=events.append))
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
