"""The node base class and the context a node runs in.

A node class declares its NodeTool `type_name`, its `inputs` (handle -> default), `outputs`
and `required` inputs, and implements `process` (one value, or a dict per output when it has
several outputs) or, for streaming nodes, `run` (an async generator of `(output, value)`).
Work that could burn CPU or block sets `execution` to `"process"` or `"thread"` and
implements the synchronous `compute` instead, which runs off the event loop within the
workflow limits (`sandbox.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nodetool.errors import (
    ModelNotFoundError,
    ProviderUnavailableError,
    UnknownProviderError,
    WorkflowError,
)
from nodetool.types.jobs import JobEvent, NodeProgress, NodeStatus, NodeUpdate, OutputUpdate

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.base import ChatProvider
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.workflows.graph import NodeSpec
    from nodetool.workflows.limits import WorkflowLimits
    from nodetool.workflows.memory import JobMemory
    from nodetool.workflows.sandbox import NodeSandbox

Emit = Callable[[JobEvent], None]

# NodeTool provider names -> ours. Anything else is "not configured here": use the default.
PROVIDER_NAMES = {
    "openai": "openai",
    "ollama": "ollama",
    "llama_cpp": "local",
    "local": "local",
    "empty": None,
    "": None,
}


@dataclass
class RunContext:
    """What every node of one run shares: ids, providers, the event sink, the results."""

    emit: Emit
    job_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    providers: ProviderRegistry | None = None
    settings: Settings | None = None
    results: dict[str, Any] = field(default_factory=dict)
    _result_counts: dict[str, int] = field(default_factory=dict)
    limits: WorkflowLimits | None = None  # None: from `settings` when the run starts
    sandbox: NodeSandbox | None = None  # None: the run starts its own
    cpu_used: float = 0.0  # sandbox CPU seconds spent by this job
    output_bytes: int = 0  # bytes of node outputs produced off the loop by this job
    memory: JobMemory | None = None  # the job's memory budget; None: made when the run starts

    def node_update(self, spec: NodeSpec, status: NodeStatus, error: str | None = None) -> None:
        self.emit(NodeUpdate(self.job_id, self.workflow_id, spec.id, spec.type, status, error))

    def set_result(self, name: str, value: Any) -> None:
        """One output value; an output that receives a stream collects a list."""
        count = self._result_counts.get(name, 0) + 1
        self._result_counts[name] = count
        if count == 1:
            self.results[name] = value
        elif count == 2:
            self.results[name] = [self.results[name], value]
        else:
            self.results[name].append(value)


class NodeContext:
    """The run context as seen by one node."""

    __slots__ = ("run", "spec")

    def __init__(self, run: RunContext, spec: NodeSpec) -> None:
        self.run = run
        self.spec = spec

    @property
    def node_id(self) -> str:
        return self.spec.id

    def progress(self, progress: float, total: float) -> None:
        run = self.run
        run.emit(NodeProgress(run.job_id, run.workflow_id, self.spec.id, progress, total))

    def output_update(self, output_name: str, value: Any) -> None:
        run = self.run
        run.emit(OutputUpdate(run.job_id, run.workflow_id, self.spec.id, output_name, value))

    async def offload(self, node: BaseNode, values: dict[str, Any]) -> Any:
        """`node.compute(values)` off the event loop, within the limits."""
        from nodetool.workflows.sandbox import offload

        return await offload(self.run, node, values)

    async def storable(self, value: Any, what: str) -> None:
        """Raise `ValueError` unless `value` can be stored as JSON within the output limit."""
        from nodetool.workflows.limits import encoded_size

        limits, sandbox = self.run.limits, self.run.sandbox
        if limits is None or sandbox is None or _plainly_storable(value, limits.node_output_bytes):
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            sandbox.threads, encoded_size, value, limits.node_output_bytes, what
        )

    def set_result(self, name: str, value: Any) -> None:
        """Record a workflow output and announce it."""
        self.run.set_result(name, value)
        self.output_update(name, value)

    async def resolve_model(self, model: Any) -> tuple[ChatProvider, str]:
        """The provider and model id for a node's `model` value (NodeTool's language_model
        dict, a model string, or nothing); the server default when its provider is not here."""
        registry = self.run.providers
        if registry is None:
            raise WorkflowError("this workflow needs a language model, but none is configured")
        spec = model if isinstance(model, dict) else {"id": model} if model else {}
        wanted = spec.get("provider")
        model_id = spec.get("id") or None
        name = PROVIDER_NAMES.get(wanted, wanted) if isinstance(wanted, str) else None
        try:
            if name and name in registry.names():
                return await registry.resolve(model_id, name)
            if name is None and model_id:
                return await registry.resolve(str(model_id), None)
        except (ModelNotFoundError, UnknownProviderError, ProviderUnavailableError):
            pass  # not served here: fall back to the server's default provider and model
        return await registry.resolve(None, None)


def _plainly_storable(value: Any, limit: int) -> bool:
    """A cheap yes for the common small scalars (no JSON encoding needed)."""
    if value is None or isinstance(value, bool | float):
        return True
    if isinstance(value, int):
        return value.bit_length() < 10_000  # far below Python's int-to-text digit limit
    return isinstance(value, str) and len(value) * 4 <= limit


class BaseNode:
    """One node type. Subclasses stay small: declare the handles, implement `process`."""

    type_name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[dict[str, Any]] = {}
    outputs: ClassVar[tuple[str, ...]] = ("output",)
    required: ClassVar[tuple[str, ...]] = ()
    dynamic: ClassVar[bool] = False  # accepts any input handle (dynamic_properties)
    collect: ClassVar[tuple[str, ...]] = ()  # inputs gathered into a list until their stream ends
    runnable: ClassVar[bool] = True  # False: annotations such as Comment never run
    uses_models: ClassVar[bool] = False
    role: ClassVar[str | None] = None  # "input" | "output" for workflow inputs and outputs
    # Where `compute` runs: "loop" (no compute; `process`/`run` only await), "thread"
    # (blocking I/O) or "process" (CPU work or user text: a sandbox worker process).
    execution: ClassVar[str] = "loop"

    __slots__ = ("spec",)

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec

    @property
    def id(self) -> str:
        return self.spec.id

    def initial_values(self) -> dict[str, Any]:
        """Defaults, then the node's `data`, then its dynamic properties."""
        values = dict(self.inputs)
        values.update(self.spec.data)
        values.update(self.spec.dynamic_properties)
        return values

    def compute(self, values: dict[str, Any], limits: WorkflowLimits) -> Any:
        """The synchronous work of a "thread" or "process" node (picklable in and out)."""
        raise NotImplementedError

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        if self.execution == "loop":
            raise NotImplementedError
        return await ctx.offload(self, values)

    async def run(self, ctx: NodeContext, values: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        """Yield `(output, value)` pairs; by default one value per output from `process`."""
        result = await self.process(ctx, values)
        if len(self.outputs) == 1:
            yield self.outputs[0], result
        else:
            for name, value in (result or {}).items():
                yield name, value


def as_text(value: Any) -> str:
    """A value as prompt text: strings as is, messages by their text, others via str()."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        content = value["content"]
        if isinstance(content, list):
            return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return as_text(content)
    return str(value)
