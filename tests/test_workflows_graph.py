"""Graph model and validation: the example workflows validate; every structural problem is
one clear WorkflowError before anything runs; params are checked against the inputs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from nodetool.errors import WorkflowError
from nodetool.workflows.graph import Graph, normalize_workflow, slugify, validate_graph
from nodetool.workflows.params import (
    coerce_params,
    describe_inputs,
    output_names,
    parse_cli_params,
)
from nodetool.workflows.registry import known_types
from tests.support.workflows import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def graph_of(nodes: list[dict], edges: list[dict]) -> Graph:
    return Graph.from_dict({"nodes": nodes, "edges": edges})


def edge(source: str, target: str, target_handle: str, source_handle: str = "output") -> dict:
    return {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }


def node(node_id: str, type_: str, **data: Any) -> dict:
    return {"id": node_id, "type": type_, "data": data}


def reject(graph: Graph) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        validate_graph(graph)
    return info.value


def test_all_five_examples_are_present_and_validate() -> None:
    assert len(EXAMPLE_FILES) == 5
    for path in EXAMPLE_FILES:
        workflow = normalize_workflow(json.loads(path.read_text(encoding="utf-8")))
        classes = validate_graph(Graph.from_dict(workflow["graph"]))
        assert len(classes) == len(workflow["graph"]["nodes"]), path.name


def test_every_type_the_examples_use_is_registered() -> None:
    used = {n["type"] for p in EXAMPLE_FILES for n in json.loads(p.read_text())["graph"]["nodes"]}
    assert used <= set(known_types())
    for name in ("nodetool.control.ForEach", "nodetool.control.Collect", "nodetool.math.Add"):
        assert name in known_types()


def test_empty_id_becomes_a_stable_slug_of_the_name() -> None:
    first = normalize_workflow(example("Shipping Quote"))
    again = normalize_workflow(example("Shipping Quote"))
    assert first["id"] == again["id"] == "shipping-quote"
    assert normalize_workflow(example("Packing List"))["id"] == "packing_list"  # given: kept
    assert slugify("  Hello, World!! ") == "hello-world"
    extra = normalize_workflow(example("Greeting Card"))
    assert extra["tags"] == example("Greeting Card")["tags"]  # other fields kept


def test_unknown_node_type_is_named() -> None:
    error = reject(graph_of([node("a", "nodetool.text.FormatTxt")], []))
    assert "unknown node type 'nodetool.text.FormatTxt'" in error.message
    assert "node 'a'" in error.message
    assert "nodetool.text.FormatText" in error.message  # the suggestion
    assert error.status == 400 and error.node_id == "a"


def test_missing_required_input() -> None:
    nodes = [node("out", "nodetool.output.Output", name="result")]
    error = reject(graph_of(nodes, []))
    assert error.message == (
        "node 'out' (nodetool.output.Output) is missing required input 'value'"
    )
    agent = [node("ag", "nodetool.agents.Agent", prompt="")]
    assert "missing required input 'prompt'" in reject(graph_of(agent, [])).message
    # connected instead of set: fine
    validate_graph(
        graph_of(
            [node("s", "nodetool.constant.String", value="hi"), *agent],
            [edge("s", "ag", "prompt")],
        )
    )


def test_cycle_is_reported_with_its_path() -> None:
    nodes = [
        node("a", "nodetool.text.FormatText", template="{{ x }}"),
        node("b", "nodetool.text.FormatText", template="{{ x }}"),
        node("c", "nodetool.text.FormatText", template="{{ x }}"),
    ]
    edges = [edge("a", "b", "x"), edge("b", "c", "x"), edge("c", "a", "x")]
    error = reject(graph_of(nodes, edges))
    assert error.message.startswith("cycle: ")
    assert all(f"'{n}'" in error.message for n in "abc")
    self_loop = reject(graph_of(nodes[:1], [edge("a", "a", "x")]))
    assert "cycle" in self_loop.message


def test_dangling_edge() -> None:
    nodes = [node("s", "nodetool.constant.String", value="x")]
    error = reject(graph_of(nodes, [edge("s", "ghost", "value")]))
    assert "refers to node 'ghost', which is not in the graph" in error.message


def test_unknown_handles_on_both_ends() -> None:
    nodes = [
        node("s", "nodetool.constant.String", value="x"),
        node("c", "nodetool.boolean.Compare"),
    ]
    bad_source = reject(graph_of(nodes, [edge("s", "c", "a", source_handle="nope")]))
    assert "node 's' (nodetool.constant.String) has no output 'nope'" in bad_source.message
    assert "outputs: output" in bad_source.message
    bad_target = reject(graph_of(nodes, [edge("s", "c", "zzz")]))
    assert "node 'c' (nodetool.boolean.Compare) has no input 'zzz'" in bad_target.message


def test_dynamic_nodes_accept_any_input_handle() -> None:
    nodes = [
        node("s", "nodetool.constant.String", value="x"),
        node("f", "nodetool.text.FormatText", template="{{ anything }}"),
    ]
    validate_graph(graph_of(nodes, [edge("s", "f", "anything")]))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "graph must be an object"),
        ({"nodes": {}}, "graph.nodes must be a list"),
        ({"nodes": [], "edges": "x"}, "graph.edges must be a list"),
        ({"nodes": [{"type": "nodetool.constant.String"}]}, "graph.nodes[0] has no id"),
        ({"nodes": [{"id": "a"}]}, "node 'a' has no type"),
        ({"nodes": [], "edges": [{"source": "a"}]}, "needs a source and a target"),
        ({"nodes": [], "edges": [{"source": "a", "target": "b"}]}, "needs a targetHandle"),
        (
            {"nodes": [{"id": "a", "type": "x", "sync_mode": "sometimes"}]},
            "unknown sync_mode 'sometimes'",
        ),
    ],
)
def test_malformed_graphs(raw: Any, fragment: str) -> None:
    with pytest.raises(WorkflowError) as info:
        Graph.from_dict(raw)
    assert fragment in info.value.message


def test_duplicate_node_ids() -> None:
    nodes = [node("a", "nodetool.constant.String"), node("a", "nodetool.constant.Integer")]
    assert "duplicate node id 'a'" in reject(graph_of(nodes, [])).message


def test_workflow_level_errors() -> None:
    with pytest.raises(WorkflowError, match="needs an id or a name"):
        normalize_workflow({"graph": {"nodes": [], "edges": []}})
    with pytest.raises(WorkflowError, match="needs a graph"):
        normalize_workflow({"name": "x"})
    broken = copy.deepcopy(example("Shipping Quote"))
    broken["graph"]["nodes"][1]["type"] = "nodetool.boolean.Compair"
    with pytest.raises(WorkflowError, match="unknown node type 'nodetool.boolean.Compair'"):
        normalize_workflow(broken)


def test_inputs_outputs_and_params() -> None:
    graph = Graph.from_dict(example("Meeting Brief")["graph"])
    names = [i["name"] for i in describe_inputs(graph)]
    assert names == ["notes", "audience"]
    assert output_names(graph) == ["brief"]
    values = coerce_params(graph, {"notes": "Tea at 4", "audience": "Everyone"})
    assert values == {"input_notes": "Tea at 4", "input_audience": "Everyone"}


def test_param_errors_name_the_param() -> None:
    graph = Graph.from_dict(example("Shipping Quote")["graph"])
    assert coerce_params(graph, {"weight": "150"}) == {"input_weight": 150}
    assert coerce_params(graph, {"weight": 150.0}) == {"input_weight": 150}
    with pytest.raises(WorkflowError) as info:
        coerce_params(graph, {"weight": "abc"})
    assert info.value.message == "param 'weight': expected an integer, got 'abc'"
    assert info.value.param == "params.weight"
    with pytest.raises(
        WorkflowError, match="unknown param 'weigth'; this workflow's inputs are: weight"
    ):
        coerce_params(graph, {"weigth": 1})
    with pytest.raises(WorkflowError, match="expected an integer"):
        coerce_params(graph, {"weight": True})
    with pytest.raises(WorkflowError, match="params must be an object"):
        coerce_params(graph, ["value"])  # type: ignore[arg-type]


def test_typed_inputs_coerce() -> None:
    nodes = [
        node("f", "nodetool.input.FloatInput", name="f"),
        node("b", "nodetool.input.BooleanInput", name="b"),
        node("m", "nodetool.input.MessageInput", name="m"),
        node("s", "nodetool.input.StringInput", name="s"),
    ]
    graph = graph_of(nodes, [])
    values = coerce_params(graph, {"f": "2.5", "b": "yes", "m": "hello", "s": 7})
    assert values == {
        "f": 2.5,
        "b": True,
        "m": {"type": "message", "role": "user", "content": "hello"},
        "s": "7",
    }
    with pytest.raises(WorkflowError, match="param 'b': expected true or false"):
        coerce_params(graph, {"b": "maybe"})
    with pytest.raises(WorkflowError, match="param 's': expected a string"):
        coerce_params(graph, {"s": {"a": 1}})


def test_cli_params() -> None:
    assert parse_cli_params(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(WorkflowError, match="bad --param 'novalue': expected name=value"):
        parse_cli_params(["novalue"])
    with pytest.raises(WorkflowError, match="expected name=value"):
        parse_cli_params(["=5"])
