"""Workflow limits in-process: the caps, linear placeholder parsing, the sandbox pools and the
per-job budgets (the attacks against a real server are in tests/security/)."""

from __future__ import annotations

import random
import re
import threading
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import WorkflowError
from nodetool.types.jobs import to_wire
from nodetool.workflows.graph import Graph, validate_graph
from nodetool.workflows.limits import (
    LimitExceeded,
    WorkflowLimits,
    check_graph_size,
    check_power,
    check_repeat,
    encoded_size,
)
from nodetool.workflows.nodes.base import BaseNode, RunContext
from nodetool.workflows.registry import register
from nodetool.workflows.runner import prepare, run_graph
from nodetool.workflows.sandbox import NodeSandbox
from nodetool.workflows.templates import render, substitute

DEFAULTS = WorkflowLimits.from_settings(None)
OLD_PLACEHOLDER = re.compile(r"{{\s*([^{}]+?)\s*}}")  # the cubic one this replaces
BUSY = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"


def limits(**changes: Any) -> WorkflowLimits:
    return WorkflowLimits.from_settings(
        Settings(**{f"workflow_{k}": v for k, v in changes.items()})
    )


# ---- pure checks --------------------------------------------------------------------------


def test_limits_come_from_settings_and_name_their_variable() -> None:
    settings = Settings(workflow_max_range=7, workflow_node_cpu_seconds=1.5)
    built = WorkflowLimits.from_settings(settings)
    assert built.max_range == 7 and built.node_cpu_seconds == 1.5
    assert DEFAULTS.max_range == Settings().workflow_max_range
    with pytest.raises(LimitExceeded, match=r"NODETOOL_WORKFLOW_MAX_RANGE"):
        render("{{ range(8)|list }}", {}, built)
    assert render("{{ range(7)|list|length }}", {}, built) == "7"


@pytest.mark.parametrize(
    ("base", "exponent", "refused"),
    [(9, 999999999, True), (2, 100_001, True), (-3, 10**30, True), (2, 100_000, False),
     (1, 10**100, False), (-1, 10**100, False), (0, 10**100, False), (10, -(10**9), False),
     (9.0, 999999999, False)],
)  # fmt: skip
def test_power_cap_counts_result_bits(base: Any, exponent: Any, refused: bool) -> None:
    if refused:
        with pytest.raises(LimitExceeded, match="NODETOOL_WORKFLOW_MAX_POWER_BITS"):
            check_power(base, exponent, DEFAULTS)
    else:
        check_power(base, exponent, DEFAULTS)


def test_repetition_cap_and_output_size() -> None:
    small = limits(node_output_bytes=1024)
    check_repeat("ab", 512, small)
    with pytest.raises(LimitExceeded, match="NODETOOL_WORKFLOW_NODE_OUTPUT_BYTES"):
        check_repeat(3000, [0], small)
    assert encoded_size({"a": "é"}, 100) == len('{"a":"é"}'.encode())
    with pytest.raises(LimitExceeded):
        encoded_size("x" * 2000, 1024)
    with pytest.raises(ValueError, match="cannot be serialised"):
        encoded_size(2**16000, 10**9)
    with pytest.raises(ValueError, match="cannot be serialised"):
        encoded_size({"x": object()}, 10**9)


def test_graph_size_caps_name_the_setting() -> None:
    tight = limits(max_nodes=2, max_edges=1, max_graph_bytes=2048)
    node = {"id": "a", "type": "nodetool.constant.String"}
    with pytest.raises(WorkflowError, match="3 nodes.*NODETOOL_WORKFLOW_MAX_NODES") as caught:
        check_graph_size({"nodes": [node] * 3, "edges": []}, tight)
    assert caught.value.status == 413
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_MAX_EDGES"):
        check_graph_size({"nodes": [], "edges": [{}, {}]}, tight)
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_MAX_GRAPH_BYTES"):
        check_graph_size({"nodes": [{**node, "data": {"value": "x" * 4096}}], "edges": []}, tight)
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_MAX_NODES"):
        prepare({"nodes": [node] * 3, "edges": []}, None, tight)


def test_validation_of_a_large_graph_uses_the_node_index() -> None:
    count = 40000  # froze the server for 33 s with linear lookups
    raw = {
        "nodes": [{"id": f"n{i}", "type": "nodetool.text.Concat"} for i in range(count)],
        "edges": [
            {"source": f"n{i}", "target": f"n{i + 1}", "targetHandle": "a"}
            for i in range(count - 1)
        ],
    }
    graph = Graph.from_dict(raw, limits(max_nodes=count, max_edges=count, max_graph_bytes=10**8))
    assert len(validate_graph(graph)) == count
    assert graph.node("n39999") is graph.nodes[-1] and graph.node("missing") is None
    graph.nodes.append(graph.nodes[0].__class__("late", "nodetool.text.Concat"))
    assert graph.node("late") is graph.nodes[-1]  # the index follows a changed node list


# ---- placeholders ---------------------------------------------------------------------------


def _old_substitute(text: str, mapping: dict[str, Any]) -> str:
    return OLD_PLACEHOLDER.sub(
        lambda m: str(mapping[m.group(1)]) if m.group(1) in mapping else m.group(0), text
    )


def test_placeholders_match_the_old_regex_on_random_text() -> None:
    rng = random.Random(16)
    mapping = {"a": "<A>", "b c": "<BC>", "x": 1}
    pieces = ["{", "}", "{{", "}}", " ", "\n", "a", "b", "c", "x", "{{ a }}", "{{b c}}"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14)))
        assert substitute(text, mapping) == _old_substitute(text, mapping), text


def test_placeholder_parsing_is_linear_on_the_attack_text() -> None:
    attack = "{{" + " " * 200_000  # cubic for the old regex (3 KB took 27 s)
    assert substitute(attack, {"a": 1}) == attack
    many = "{{ " * 100_000 + "a }}"
    assert substitute(many, {"a": "!"}) == "{{ " * 99_999 + "!"


# ---- the sandbox ----------------------------------------------------------------------------


@register
class ThreadEcho(BaseNode):
    """Test node: blocking work in the thread pool; records the thread it ran on."""

    type_name = "tests.limits.ThreadEcho"
    inputs = {"value": ""}
    execution = "thread"
    threads: list[str] = []

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> Any:
        ThreadEcho.threads.append(threading.current_thread().name)
        return values["value"]


@register
class ProcessPid(BaseNode):
    """Test node: reports the pid of the process that ran it (imported there by module)."""

    type_name = "tests.limits.ProcessPid"
    inputs = {"value": 0}
    execution = "process"

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> Any:
        import os

        return os.getpid()


def chain(*specs: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """Nodes in a line, each feeding the next's `handle`, the last into output `out`."""
    nodes = [{"id": node_id, "type": kind, "data": data} for node_id, kind, data in specs]
    nodes.append({"id": "out", "type": "nodetool.output.Output", "data": {"name": "out"}})
    edges = [
        {"source": a["id"], "target": b["id"], "targetHandle": handle}
        for a, b, handle in zip(nodes, nodes[1:], ["value"] * len(nodes), strict=False)
    ]
    return {"nodes": nodes, "edges": edges}


async def test_thread_and_process_nodes_run_off_the_event_loop() -> None:
    import os

    graph = chain(("t", ThreadEcho.type_name, {"value": "hi"}), ("p", ProcessPid.type_name, {}))
    events: list[dict[str, Any]] = []
    sandbox = NodeSandbox(DEFAULTS)
    try:
        await sandbox.warm()
        context = RunContext(
            emit=lambda e: events.append(to_wire(e)), limits=DEFAULTS, sandbox=sandbox
        )
        first = await run_graph(prepare(graph), context)
        second = await run_graph(
            prepare(graph),
            RunContext(emit=lambda e: events.append(to_wire(e)), limits=DEFAULTS, sandbox=sandbox),
        )
    finally:
        await sandbox.aclose()
    assert first["out"] != os.getpid()
    assert second["out"] == first["out"]  # the warm worker process is reused
    assert ThreadEcho.threads and all(n.startswith("nodetool-node") for n in ThreadEcho.threads)
    assert context.cpu_used > 0 and context.output_bytes > 0


async def test_job_cpu_budget_spans_nodes() -> None:
    tight = limits(node_cpu_seconds=30, job_cpu_seconds=1, node_timeout=600)
    graph = chain(("busy", "nodetool.text.FormatText", {"template": BUSY}))
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_JOB_CPU_SECONDS"):
        await run_graph(prepare(graph), RunContext(emit=lambda e: None, limits=tight))


async def test_job_output_budget_spans_nodes() -> None:
    tight = limits(job_output_bytes=1500, node_output_bytes=1024)
    text = "{{ 'x' * 1000 }}"
    graph = chain(
        ("a", "nodetool.text.FormatText", {"template": text}),
        ("b", "nodetool.text.Template", {"string": ""}),
    )
    graph["edges"][0]["targetHandle"] = "string"
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_JOB_OUTPUT_BYTES"):
        await run_graph(prepare(graph), RunContext(emit=lambda e: None, limits=tight))


async def test_node_timeout_fails_the_node() -> None:
    slow = limits(node_timeout=0.5, node_cpu_seconds=30)
    graph = chain(("busy", "nodetool.text.FormatText", {"template": BUSY}))
    with pytest.raises(WorkflowError, match="NODETOOL_WORKFLOW_NODE_TIMEOUT"):
        await run_graph(prepare(graph), RunContext(emit=lambda e: None, limits=slow))


async def test_foreach_cap_and_coarse_progress() -> None:
    graph = {
        "nodes": [
            {"id": "each", "type": "nodetool.control.ForEach", "data": {"input_list": "ab" * 300}},
            {"id": "out", "type": "nodetool.output.Output", "data": {"name": "out"}},
        ],
        "edges": [{"source": "each", "target": "out", "targetHandle": "value"}],
    }
    events: list[dict[str, Any]] = []
    results = await run_graph(prepare(graph), RunContext(emit=lambda e: events.append(to_wire(e))))
    assert len(results["out"]) == 600
    progress = [e for e in events if e["type"] == "node_progress"]
    assert 1 <= len(progress) <= 101 and progress[-1]["progress"] == 600
    with pytest.raises(WorkflowError, match="600 items.*NODETOOL_WORKFLOW_MAX_FOREACH_ITEMS"):
        context = RunContext(
            emit=lambda e: events.append(to_wire(e)), limits=limits(max_foreach_items=599)
        )
        await run_graph(prepare(graph), context)


# ---- a result the store cannot take -----------------------------------------------------------


@register
class RawResult(BaseNode):
    """Test node: records an output without the output nodes' checks (a buggy plugin node)."""

    type_name = "tests.limits.RawResult"
    inputs = {"digits": 5000}
    outputs = ()

    async def process(self, ctx: Any, values: dict[str, Any]) -> None:
        ctx.set_result("big", 10 ** values["digits"])


async def test_a_result_the_store_refuses_fails_the_job_and_ends_its_log(tmp_path) -> None:
    from nodetool.storage import open_store
    from nodetool.workflows.jobs import JobManager
    from tests.support.workflows import wire

    settings = Settings(data_dir=tmp_path, config_dir=tmp_path / "config")
    store = await open_store(settings)
    manager = JobManager(settings, store, None)
    await manager.start()
    try:
        graph = {"nodes": [{"id": "raw", "type": RawResult.type_name}], "edges": []}
        job = await manager.start_job("u1", graph=graph)
        live = [event async for event in wire(manager.subscribe("u1", job["id"]))]
        replayed = [
            event async for event in wire(manager.subscribe("u1", job["id"]))
        ]  # the store's
        record = await manager.get("u1", job["id"])
    finally:
        await manager.aclose()
        await store.close()
    assert record["status"] == "failed" and "result cannot be stored" in record["error"]
    for events in (live, replayed):
        assert events[-1]["type"] == "job_update" and events[-1]["status"] == "failed"
        assert events[-1]["error"] == record["error"]
