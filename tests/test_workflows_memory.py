"""The per-job memory budget in-process: value sizes, the account, and runs that go past it
(the attack against a real server is in tests/security/test_workflow_limits.py)."""

from __future__ import annotations

from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.errors import WorkflowError
from nodetool.workflows.limits import LimitExceeded, WorkflowLimits
from nodetool.workflows.memory import EVENT_BYTES, MIB, JobMemory, value_size
from nodetool.workflows.nodes.base import RunContext
from nodetool.workflows.runner import prepare, run_graph

SETTING = "NODETOOL_WORKFLOW_JOB_MEMORY_MB"


def limits(**changes: Any) -> WorkflowLimits:
    return WorkflowLimits.from_settings(
        Settings(**{f"workflow_{k}": v for k, v in changes.items()})
    )


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "data": data}


def edge(source: str, target: str, handle: str) -> dict[str, str]:
    return {"source": source, "sourceHandle": "output", "target": target, "targetHandle": handle}


def replicating_graph(value: Any, times: int) -> dict[str, Any]:
    """`value` passed on once per item of a `times`-character ForEach: many references to
    one medium value, each emission well under the per-node limit."""
    return {
        "nodes": [
            node("each", "nodetool.control.ForEach", input_list="y" * times),
            node("big", "nodetool.constant.String", value=value),
            node("pass", "nodetool.boolean.ConditionalSwitch"),
            node("out", "nodetool.output.Output", name="out"),
        ],
        "edges": [
            edge("each", "pass", "condition"),
            edge("big", "pass", "if_true"),
            edge("pass", "out", "value"),
        ],
    }


async def run(graph: dict[str, Any], tight: WorkflowLimits) -> tuple[dict, list[dict]]:
    events: list[dict[str, Any]] = []
    results = await run_graph(prepare(graph, None, tight), RunContext(events.append, limits=tight))
    return results, events


# ---- sizes and the account ------------------------------------------------------------------


def test_value_size_counts_every_reference_in_full() -> None:
    text = "x" * 10_000
    one = value_size(text, 10**9)
    assert 10_000 < one < 10_100
    shared = value_size([text] * 100, 10**9)
    assert shared >= 100 * one  # what JSON of it would take, not the one string it shares
    nested = {"a": [text, {"b": (text, 7)}]}
    assert value_size(nested, 10**9) > 2 * one


def test_value_size_stops_past_its_limit() -> None:
    texts = ["x" * 1000] * 10**4  # ten megabytes as JSON: counted only until past the limit
    assert MIB < value_size(texts, MIB) < MIB + 2 * 1049
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    assert value_size(cyclic, 10_000) > 10_000  # ends


async def test_the_account_names_its_setting_and_remembers_containers() -> None:
    memory = JobMemory(1)
    big = ["y" * 100] * 2000  # ~310 KB; more objects than INLINE_STEPS: walked in a thread
    await memory.charge(big)
    first = memory.used
    await memory.charge(big)  # passed on again: charged again, from the remembered size
    assert memory.used == 2 * first
    await memory.charge(big)
    expected = rf"more memory than its budget; the limit is 1 MiB \({SETTING}\)"
    with pytest.raises(LimitExceeded, match=expected):
        await memory.charge(big)
    assert memory.left() == 0


def test_events_are_charged_as_they_are_emitted() -> None:
    seen: list[Any] = []
    memory = JobMemory(1)
    emit = memory.counting(seen.append)
    emit({"type": "node_update"})
    emit({"type": "node_progress"})
    assert len(seen) == 2 and memory.used == 2 * EVENT_BYTES


def test_the_default_budget_is_a_setting() -> None:
    assert WorkflowLimits.from_settings(None).job_memory_mb == 128
    assert limits(job_memory_mb=64).job_memory_mb == 64


# ---- runs -----------------------------------------------------------------------------------


async def test_many_references_to_a_medium_value_fail_the_job() -> None:
    graph = replicating_graph("z" * 100_000, 200)  # 200 x 100 KB, twice (switch, output)
    with pytest.raises(WorkflowError, match=f"node '(each|pass|out)'.*{SETTING}") as caught:
        await run(graph, limits(job_memory_mb=4))
    assert "the limit is 4 MiB" in caught.value.message
    results, _ = await run(graph, limits(job_memory_mb=64))  # fits a larger budget
    # (items that reach the switch before the constant does pass nothing on)
    assert 100 < len(results["out"]) <= 200 and set(results["out"]) == {"z" * 100_000}


async def test_a_process_nodes_output_over_the_budget_is_refused_in_the_worker() -> None:
    graph = {
        "nodes": [
            node("make", "nodetool.text.FormatText", template="{{ 'x' * 3000000 }}"),
            node("out", "nodetool.output.Output", name="out"),
        ],
        "edges": [edge("make", "out", "value")],
    }
    with pytest.raises(WorkflowError, match=f"node 'make'.*the limit is 2 MiB.*{SETTING}"):
        await run(graph, limits(job_memory_mb=2))
    results, _ = await run(graph, limits(job_memory_mb=16))
    assert len(results["out"]) == 3_000_000


async def test_the_event_log_counts_against_the_budget() -> None:
    # 2000 one-character values take ~250 KB; their 2000+ events push the job past 1 MiB
    graph = {
        "nodes": [
            node("each", "nodetool.control.ForEach", input_list="y" * 2000),
            node("out", "nodetool.output.Output", name="out"),
        ],
        "edges": [edge("each", "out", "value")],
    }
    with pytest.raises(WorkflowError, match=SETTING):
        await run(graph, limits(job_memory_mb=1))
    results, events = await run(graph, limits(job_memory_mb=2))
    assert len(results["out"]) == 2000 and len(events) > 2000
