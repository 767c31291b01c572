"""The async DAG runner: one actor task per node, values flow along edges as messages.

A node runs as soon as every connected input has a value, so independent nodes run
concurrently. Streams work as in NodeTool: a node fed a stream runs once per arriving value
(`sync_mode: on_any`, the latest value of its other inputs) or once per aligned set of values
(`zip_all`); `collect` inputs gather a whole stream into a list. When a node is done its
outgoing edges close; a node whose inputs close without ever getting a value is skipped.

Events (the typed job events of `types/jobs.py`, docs/protocol.md §6) go to the run context's
`emit`: `NodeUpdate` (running, completed, error, skipped), `NodeProgress`, `OutputUpdate`.
The first node failure cancels the rest and raises `WorkflowError` naming the node.

Nothing heavy runs on the event loop: "process" and "thread" nodes compute in the run's
`NodeSandbox` (the server's shared one, else one started for this run), within the
`WorkflowLimits`; a node emitting many values gives the loop a turn every `YIELD_EVERY`.
Every value a node emits is charged to the job's memory budget (`memory.py`) first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodetool.errors import NodetoolError, WorkflowError
from nodetool.workflows.graph import Graph, NodeSpec, validate_graph
from nodetool.workflows.limits import WorkflowLimits
from nodetool.workflows.memory import JobMemory
from nodetool.workflows.nodes.base import BaseNode, NodeContext, RunContext
from nodetool.workflows.params import coerce_params
from nodetool.workflows.sandbox import NodeSandbox

log = logging.getLogger(__name__)

_EOS = object()  # end of one edge's stream
YIELD_EVERY = 32  # values a node may emit before the runner lets the event loop run


@dataclass
class Prepared:
    """A validated graph with its node classes and checked params (by input node id)."""

    graph: Graph
    classes: dict[str, type[BaseNode]]
    params: dict[str, Any]

    @property
    def uses_models(self) -> bool:
        return any(cls.uses_models for cls in self.classes.values())


def prepare(
    graph: Graph | Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    limits: WorkflowLimits | None = None,
) -> Prepared:
    """Validate the graph (within `limits`, by default the default limits) and the params;
    raises `WorkflowError` before anything runs."""
    limits = limits or WorkflowLimits.from_settings(None)
    if isinstance(graph, Graph):
        parsed = graph
        if len(graph.nodes) > limits.max_nodes or len(graph.edges) > limits.max_edges:
            parsed = Graph.from_dict(graph.to_dict(), limits)  # raises the size error
    else:
        parsed = Graph.from_dict(graph, limits)
    classes = validate_graph(parsed)
    return Prepared(parsed, classes, coerce_params(parsed, params))


class _NodeFailed(Exception):
    def __init__(self, spec: NodeSpec, error: BaseException) -> None:
        super().__init__(str(error))
        self.spec = spec
        self.error = error


class _Actor:
    __slots__ = ("node", "inbox", "in_counts", "out_edges")

    def __init__(self, node: BaseNode) -> None:
        self.node = node
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.in_counts: dict[str, int] = {}
        self.out_edges: dict[str, list[tuple[_Actor, str]]] = {}


async def run_graph(prepared: Prepared, context: RunContext) -> dict[str, Any]:
    """Run to the end; returns the outputs (`context.results`)."""
    if context.limits is None:
        context.limits = WorkflowLimits.from_settings(context.settings)
    own_sandbox = None
    if context.sandbox is None and any(
        cls.execution != "loop" for cls in prepared.classes.values()
    ):
        own_sandbox = context.sandbox = NodeSandbox(context.limits)
    if context.memory is None:
        executor = context.sandbox.threads if context.sandbox else None
        context.memory = JobMemory(context.limits.job_memory_mb, executor)
        context.emit = context.memory.counting(context.emit)
    try:
        return await _run(prepared, context)
    finally:
        if own_sandbox is not None:
            context.sandbox = None
            await own_sandbox.aclose()


async def _run(prepared: Prepared, context: RunContext) -> dict[str, Any]:
    actors = {
        spec.id: _Actor(prepared.classes[spec.id](spec))
        for spec in prepared.graph.nodes
        if prepared.classes[spec.id].runnable
    }
    for edge in prepared.graph.edges:
        source, target = actors[edge.source], actors[edge.target]
        source.out_edges.setdefault(edge.source_handle, []).append((target, edge.target_handle))
        target.in_counts[edge.target_handle] = target.in_counts.get(edge.target_handle, 0) + 1
    runner = _Runner(context, prepared.params)
    tasks = [asyncio.create_task(runner.actor(actor)) for actor in actors.values()]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
    except _NodeFailed as failure:
        raise _as_workflow_error(failure, context) from failure.error
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return context.results


def _as_workflow_error(failure: _NodeFailed, context: RunContext) -> WorkflowError:
    spec, error = failure.spec, failure.error
    if isinstance(error, NodetoolError):
        message, status = error.message, error.status
    else:
        message = str(error) or type(error).__name__
        status = 400 if isinstance(error, ValueError | TypeError | ArithmeticError) else 500
        if status == 500:
            log.error("node %s (%s) crashed", spec.id, spec.type, exc_info=error)
    context.node_update(spec, "error", message)
    return WorkflowError(
        f"node '{spec.id}' ({spec.type}) failed: {message}", node_id=spec.id, status=status
    )


class _Runner:
    __slots__ = ("context", "params")

    def __init__(self, context: RunContext, params: dict[str, Any]) -> None:
        self.context = context
        self.params = params

    async def actor(self, actor: _Actor) -> None:
        node = actor.node
        spec = node.spec
        ctx = NodeContext(self.context, spec)
        values = node.initial_values()
        if spec.id in self.params:
            values["value"] = self.params[spec.id]
        open_counts = dict(actor.in_counts)
        collected: dict[str, list[Any]] = {h: [] for h in node.collect if h in open_counts}
        for handle in node.collect:
            if handle not in open_counts:
                default = values.get(handle)
                values[handle] = list(default) if isinstance(default, list) else [default]
        plain = [h for h in open_counts if h not in collected]
        zipped = spec.sync_mode == "zip_all" and not collected
        queued: dict[str, deque[Any]] = {h: deque() for h in plain}
        seen: set[str] = set()
        runs = 0
        memory = self.context.memory
        assert memory is not None  # made by run_graph

        async def fire() -> None:
            nonlocal runs
            if runs == 0:
                self.context.node_update(spec, "running")
            runs += 1
            emitted = 0
            try:
                async for handle, value in node.run(ctx, dict(values)):
                    if not memory.charge_now(value):  # a big value: measured in a thread
                        await memory.charge(value)
                    for target, target_handle in actor.out_edges.get(handle, ()):
                        target.inbox.put_nowait((target_handle, value))
                    emitted += 1
                    if emitted % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise _NodeFailed(spec, exc) from exc

        def zip_ready() -> bool:
            fresh = False
            for handle in plain:
                if queued[handle]:
                    fresh = True
                elif handle in open_counts or handle not in seen:
                    return False
            return fresh

        if not open_counts:
            await fire()
        while open_counts:
            handle, item = await actor.inbox.get()
            if item is _EOS:
                open_counts[handle] -= 1
                if not open_counts[handle]:
                    del open_counts[handle]
            elif handle in collected:
                collected[handle].append(item)
                continue
            elif zipped:
                queued[handle].append(item)
            else:
                values[handle] = item
                seen.add(handle)
                if not collected and len(seen) == len(plain):
                    await fire()
                continue
            while zipped and zip_ready():
                for name in plain:
                    if queued[name]:
                        values[name] = queued[name].popleft()
                        seen.add(name)
                await fire()
        if collected and len(seen) == len(plain):
            values.update(collected)
            await fire()
        for targets in actor.out_edges.values():
            for target, target_handle in targets:
                target.inbox.put_nowait((target_handle, _EOS))
        self.context.node_update(spec, "completed" if runs else "skipped")
