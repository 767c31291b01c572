"""Workflow overhead benchmark: what running nodes off the event loop costs, and the fixes.

    .venv/bin/python benchmarks/workflow_overhead.py [--nodes 50] [--rounds 5]

Measures side by side, in one run:
  1. per-node overhead of a chain of small nodes (FormatText, Add) run by the real runner
     (a) inline on the event loop, as before the sandbox (a stand-in sandbox that calls
     `compute` directly), (b) in the warm sandbox worker processes (the default now);
  2. graph validation time at growing sizes with the node lookup used before (a linear scan)
     and the index used now;
  3. `{{ key }}` placeholder parsing of the attack text `"{{" + spaces` with the old regex and
     the linear scanner;
  4. the job memory account: a ForEach of many values into an Output, with an account that
     charges nothing (as before the budget) and with the real one.
Prints each pair and the ratio; everything runs in this process (the sandbox starts its own
worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from functools import partial
from typing import Any

from nodetool.workflows.graph import Graph, validate_graph
from nodetool.workflows.limits import WorkflowLimits, encoded_size
from nodetool.workflows.memory import JobMemory, value_size
from nodetool.workflows.nodes.base import BaseNode, RunContext
from nodetool.workflows.runner import prepare, run_graph
from nodetool.workflows.sandbox import NodeSandbox
from nodetool.workflows.templates import substitute

LIMITS = WorkflowLimits.from_settings(None)
OLD_PLACEHOLDER = re.compile(r"{{\s*([^{}]+?)\s*}}")


class InlineSandbox(NodeSandbox):
    """The behaviour before the sandbox: `compute` on the event loop itself."""

    async def run_process(
        self, node_type: type[BaseNode], values: dict, cpu_seconds: float, memory_left: int
    ):
        value = node_type(None).compute(values, self.limits)  # type: ignore[arg-type]
        size = encoded_size(value, self.limits.node_output_bytes)
        return value, 0.0, size, value_size(value, memory_left)

    async def run_thread(self, node: BaseNode, values: dict, memory_left: int):
        value = node.compute(values, self.limits)
        size = encoded_size(value, self.limits.node_output_bytes)
        return value, size, value_size(value, memory_left)


def chain_graph(kind: str, count: int) -> dict[str, Any]:
    """`count` nodes in a line: FormatText passes text on, Add adds 1 each step."""
    nodes: list[dict[str, Any]] = [{"id": "in", "type": "nodetool.constant.Integer", "data": {}}]
    edges = []
    for i in range(count):
        if kind == "text":
            nodes.append(
                {"id": f"n{i}", "type": "nodetool.text.FormatText", "data": {"template": "{{ v }}"}}
            )
            handle = "v"
        else:
            nodes.append({"id": f"n{i}", "type": "nodetool.math.Add", "data": {"b": 1}})
            handle = "a"
        source = nodes[-2]["id"]
        edges.append({"source": source, "target": f"n{i}", "targetHandle": handle})
    nodes.append({"id": "out", "type": "nodetool.output.Output", "data": {"name": "out"}})
    edges.append({"source": f"n{count - 1}", "target": "out", "targetHandle": "value"})
    return {"nodes": nodes, "edges": edges}


async def run_chain(sandbox: NodeSandbox, graph: dict[str, Any], rounds: int) -> float:
    """Median seconds per run of the graph (the median: the machine may be shared)."""
    prepared = prepare(graph)
    times = []
    for _ in range(rounds):
        context = RunContext(emit=lambda event: None, limits=LIMITS, sandbox=sandbox)
        start = time.perf_counter()
        await run_graph(prepared, context)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def node_overhead(count: int, rounds: int) -> None:
    print(f"1. per-node time, chains of {count} nodes (median of {rounds} runs)")
    print(f"   {'node':<12}{'inline (before)':>18}{'sandbox (now)':>18}{'ratio':>8}")
    inline = InlineSandbox(LIMITS)
    warm = NodeSandbox(LIMITS)
    await warm.warm()
    try:
        for kind in ("text", "math"):
            graph = chain_graph(kind, count)
            await run_chain(warm, graph, 1)  # first use imports the node modules in the workers
            before = await run_chain(inline, graph, rounds) / count
            after = await run_chain(warm, graph, rounds) / count
            label = "FormatText" if kind == "text" else "math.Add"
            print(
                f"   {label:<12}{before * 1e3:>15.3f} ms{after * 1e3:>15.3f} ms"
                f"{after / before:>7.1f}x"
            )
    finally:
        await inline.aclose()
        await warm.aclose()


class LinearLookupGraph(Graph):
    """The node lookup before: a scan of the node list per edge."""

    def node(self, node_id: str):  # type: ignore[override]
        return next((n for n in self.nodes if n.id == node_id), None)


def best_of(repeat: int, fn: Any) -> float:
    """The fastest of `repeat` timed calls (the least disturbed by other load)."""
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def validation(sizes: list[int]) -> None:
    print("2. graph validation (a chain of Concat nodes, best of 3)")
    validate_graph(Graph.from_dict({"nodes": [], "edges": []}))  # loads the node registry
    print(f"   {'nodes':>7}{'linear scan (before)':>22}{'index (now)':>14}{'ratio':>9}")
    for count in sizes:
        raw = {
            "nodes": [{"id": f"n{i}", "type": "nodetool.text.Concat"} for i in range(count)],
            "edges": [
                {"source": f"n{i}", "target": f"n{i + 1}", "targetHandle": "a"}
                for i in range(count - 1)
            ],
        }
        now = Graph.from_dict(raw)
        before = LinearLookupGraph(now.nodes, now.edges)
        timings = [best_of(3, partial(validate_graph, graph)) for graph in (before, now)]
        print(
            f"   {count:>7}{timings[0] * 1e3:>19.1f} ms{timings[1] * 1e3:>11.1f} ms"
            f"{timings[0] / timings[1]:>8.0f}x"
        )


def placeholders(sizes: list[int]) -> None:
    print('3. Template placeholders on "{{" + N spaces')
    print(f"   {'N':>7}{'regex (before)':>17}{'scanner (now)':>16}{'ratio':>10}")
    for size in sizes:
        text = "{{" + " " * size
        timings = []
        for fn in (partial(OLD_PLACEHOLDER.sub, "", text), partial(substitute, text, {})):
            start = time.perf_counter()
            fn()
            timings.append(time.perf_counter() - start)
        print(
            f"   {size:>7}{timings[0] * 1e3:>14.1f} ms{timings[1] * 1e3:>13.3f} ms"
            f"{timings[0] / timings[1]:>9.0f}x"
        )


class FreeMemory(JobMemory):
    """The behaviour before the job memory budget: nothing is charged."""

    async def charge(self, value: Any) -> None:
        return None


async def memory_account(items: int, rounds: int) -> None:
    print(f"4. job memory account: ForEach of {items} values into an Output (median of {rounds})")
    print(f"   {'values':<22}{'no account (before)':>21}{'account (now)':>16}{'ratio':>8}")
    cases = {
        "1-char strings": "y" * items,
        "100-item lists": [list(range(100))] * items,
    }
    for label, input_list in cases.items():
        graph = {
            "nodes": [
                {"id": "each", "type": "nodetool.control.ForEach", "data": {}},
                {"id": "out", "type": "nodetool.output.Output", "data": {"name": "out"}},
            ],
            "edges": [{"source": "each", "target": "out", "targetHandle": "value"}],
        }
        prepared = prepare(graph, {}, LIMITS)
        prepared.graph.nodes[0].data["input_list"] = input_list
        timings = []
        for free in (True, False):
            times = []
            for _ in range(rounds):
                memory = FreeMemory(LIMITS.job_memory_mb) if free else None
                context = RunContext(emit=lambda event: None, limits=LIMITS, memory=memory)
                start = time.perf_counter()
                await run_graph(prepared, context)
                times.append(time.perf_counter() - start)
            timings.append(statistics.median(times))
        print(
            f"   {label:<22}{timings[0] * 1e3:>18.1f} ms{timings[1] * 1e3:>13.1f} ms"
            f"{timings[1] / timings[0]:>7.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(node_overhead(args.nodes, args.rounds))
    validation([1000, 2000, 4000, 8000])
    placeholders([100, 200, 400, 800])
    asyncio.run(memory_account(10_000, args.rounds))


if __name__ == "__main__":
    main()
