"""The limits a workflow run is held to, and the checks that only need the values.

`WorkflowLimits` is built from `Settings` (each field is a `workflow_*` setting, one home for
every default: see docs/workflow-limits.md). It is a small frozen value so it can travel to
the sandbox worker processes with each task. The checks here are cheap and pure: they run
in the server (graph size) and in the workers (exponent size, repetition, output size).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from nodetool.errors import WorkflowError

if TYPE_CHECKING:
    from nodetool.config import Settings

BODY_SLACK = 64 * 1024  # a workflow body may carry this much besides its graph


@dataclass(frozen=True, slots=True)
class WorkflowLimits:
    """Per-node and per-job bounds; field `x` is the setting `workflow_x`."""

    node_cpu_seconds: float
    job_cpu_seconds: float
    node_timeout: float
    node_memory_mb: int
    node_output_bytes: int
    job_output_bytes: int
    job_result_bytes: int
    job_memory_mb: int
    processes: int
    threads: int
    max_range: int
    max_power_bits: int
    max_foreach_items: int
    max_nodes: int
    max_edges: int
    max_graph_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings | None) -> WorkflowLimits:
        """The limits of `settings`; the settings' defaults when there are none."""
        if settings is None:
            from nodetool.config import Settings

            return cls(
                **{f.name: Settings.model_fields[f"workflow_{f.name}"].default for f in fields(cls)}
            )
        return cls(**{f.name: getattr(settings, f"workflow_{f.name}") for f in fields(cls)})


def setting_env(name: str) -> str:
    """The environment variable of limit `name` (for error messages)."""
    return f"NODETOOL_WORKFLOW_{name.upper()}"


class LimitExceeded(ValueError):
    """A value or a run went past one of the limits; the message names the setting."""

    def __init__(self, what: str, limit_name: str, limit: Any) -> None:
        super().__init__(f"{what}; the limit is {limit} ({setting_env(limit_name)})")


def encoded_size(value: Any, limit: int, what: str = "output") -> int:
    """Bytes of `value` as JSON; raises when it cannot be stored or is over `limit` bytes."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} cannot be serialised: {exc}") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise LimitExceeded(f"{what} is {size} bytes", "node_output_bytes", limit)
    return size


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def check_power(base: Any, exponent: Any, limits: WorkflowLimits) -> None:
    """Refuse an integer power whose result would have more than `max_power_bits` bits."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return
    magnitude = abs(base)
    if magnitude <= 1:
        return
    bits = exponent * math.log2(magnitude) if exponent < 1 << 1000 else math.inf
    if bits > limits.max_power_bits:
        shown = f"{base}**{exponent}" if exponent < 10**12 else f"{base}**<huge>"
        raise LimitExceeded(
            f"{shown} would have about {bits:.3g} bits", "max_power_bits", limits.max_power_bits
        )


def check_repeat(left: Any, right: Any, limits: WorkflowLimits) -> None:
    """Refuse `text * n` (or a list) whose result would exceed the node output size."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple | bytes) and isinstance(count, int):
            size = len(seq) * count
            if size > limits.node_output_bytes:
                raise LimitExceeded(
                    f"repeating a sequence {count} times gives {size} items",
                    "node_output_bytes",
                    limits.node_output_bytes,
                )


def check_graph_size(raw: Any, limits: WorkflowLimits) -> None:
    """Refuse a graph JSON object over the node, edge or byte limits (before parsing it)."""
    if not isinstance(raw, dict):
        return
    for key, name in (("nodes", "max_nodes"), ("edges", "max_edges")):
        items, limit = raw.get(key), getattr(limits, name)
        if isinstance(items, list) and len(items) > limit:
            _too_large(f"the graph has {len(items)} {key}", name, limit, f"graph.{key}")
    try:
        size = len(json.dumps(raw, separators=(",", ":"), default=str))
    except (ValueError, RecursionError):
        raise WorkflowError("the graph is not valid JSON", param="graph") from None
    if size > limits.max_graph_bytes:
        _too_large(f"the graph is {size} bytes", "max_graph_bytes", limits.max_graph_bytes, "graph")


def check_body_size(size: int, limits: WorkflowLimits) -> None:
    """Refuse a request body that cannot hold a graph within `max_graph_bytes` (unparsed)."""
    if size > limits.max_graph_bytes + BODY_SLACK:
        _too_large(
            f"the workflow is {size} bytes", "max_graph_bytes", limits.max_graph_bytes, "body"
        )


def _too_large(what: str, name: str, limit: int, param: str) -> None:
    message = str(LimitExceeded(what, name, limit))
    raise WorkflowError(message, param=param, code="graph_too_large", status=413)
