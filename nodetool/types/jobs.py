"""Workflow job statuses and typed job events, with their one wire shape (docs/protocol.md §6).

The runner and the job manager produce these values; the edges (`/predict`, `/chat` workflow
turns, the worker's JSON and SSE) and the job event log (store and Redis stream) turn them
into wire dicts with `to_wire` and back with `from_wire`. Plain slotted dataclasses: a job
streams one per node step or LLM chunk, so they stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, get_args

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL_JOB_STATUSES: tuple[JobStatus, ...] = ("completed", "failed", "cancelled")
UNFINISHED_JOB_STATUSES: tuple[JobStatus, ...] = tuple(
    s for s in JOB_STATUSES if s not in TERMINAL_JOB_STATUSES
)

NodeStatus = Literal["running", "completed", "error", "skipped"]


@dataclass(slots=True)
class JobUpdate:
    """The job's status changed. `result` is sent when it completed, `error` when it failed
    or was cancelled; `attempt` counts its runs (0 while queued)."""

    job_id: str
    workflow_id: str | None
    status: JobStatus
    attempt: int = 0
    result: Any = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES


@dataclass(slots=True)
class NodeUpdate:
    """A node started, completed, failed (`error` says why) or was skipped."""

    job_id: str | None
    workflow_id: str | None
    node_id: str
    node_type: str
    status: NodeStatus
    error: str | None = None


@dataclass(slots=True)
class NodeProgress:
    job_id: str | None
    workflow_id: str | None
    node_id: str
    progress: float
    total: float


@dataclass(slots=True)
class OutputUpdate:
    """A value on a workflow output, a Preview, or a streamed LLM chunk."""

    job_id: str | None
    workflow_id: str | None
    node_id: str
    output_name: str
    value: Any


JobEvent = JobUpdate | NodeUpdate | NodeProgress | OutputUpdate
JOB_EVENT_TYPES = (JobUpdate, NodeUpdate, NodeProgress, OutputUpdate)


def is_terminal(event: JobEvent) -> TypeGuard[JobUpdate]:
    """Whether `event` is a job's final `job_update`."""
    return type(event) is JobUpdate and event.terminal


# ---- wire shape ------------------------------------------------------------------------------


def _job_update_wire(event: JobUpdate) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "type": "job_update",
        "status": event.status,
        "job_id": event.job_id,
        "workflow_id": event.workflow_id,
        "attempt": event.attempt,
    }
    if event.status == "completed":
        wire["result"] = event.result
    elif event.status in TERMINAL_JOB_STATUSES:
        wire["error"] = event.error
    return wire


def _node_update_wire(event: NodeUpdate) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "type": "node_update",
        "job_id": event.job_id,
        "workflow_id": event.workflow_id,
        "node_id": event.node_id,
        "node_type": event.node_type,
        "status": event.status,
    }
    if event.status == "error":
        wire["error"] = event.error
    return wire


def _node_progress_wire(event: NodeProgress) -> dict[str, Any]:
    return {
        "type": "node_progress",
        "job_id": event.job_id,
        "workflow_id": event.workflow_id,
        "node_id": event.node_id,
        "progress": event.progress,
        "total": event.total,
    }


def _output_update_wire(event: OutputUpdate) -> dict[str, Any]:
    return {
        "type": "output_update",
        "job_id": event.job_id,
        "workflow_id": event.workflow_id,
        "node_id": event.node_id,
        "output_name": event.output_name,
        "value": event.value,
    }


_TO_WIRE: dict[type, Any] = {
    JobUpdate: _job_update_wire,
    NodeUpdate: _node_update_wire,
    NodeProgress: _node_progress_wire,
    OutputUpdate: _output_update_wire,
}


def to_wire(event: JobEvent) -> dict[str, Any]:
    """The event as its wire dict (key order as sent since the first release)."""
    adapt = _TO_WIRE.get(type(event))
    if adapt is None:
        raise TypeError(f"not a job event: {event!r}")
    return adapt(event)


def _job_update(wire: Mapping[str, Any]) -> JobUpdate:
    status = wire["status"]
    if status not in JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}")
    return JobUpdate(
        wire["job_id"],
        wire.get("workflow_id"),
        status,
        wire.get("attempt", 0),
        wire.get("result"),
        wire.get("error"),
    )


def _node_update(wire: Mapping[str, Any]) -> NodeUpdate:
    return NodeUpdate(
        wire.get("job_id"),
        wire.get("workflow_id"),
        wire["node_id"],
        wire["node_type"],
        wire["status"],
        wire.get("error"),
    )


def _node_progress(wire: Mapping[str, Any]) -> NodeProgress:
    return NodeProgress(
        wire.get("job_id"),
        wire.get("workflow_id"),
        wire["node_id"],
        wire["progress"],
        wire["total"],
    )


def _output_update(wire: Mapping[str, Any]) -> OutputUpdate:
    return OutputUpdate(
        wire.get("job_id"),
        wire.get("workflow_id"),
        wire["node_id"],
        wire["output_name"],
        wire.get("value"),
    )


_FROM_WIRE: dict[Any, Any] = {
    "job_update": _job_update,
    "node_update": _node_update,
    "node_progress": _node_progress,
    "output_update": _output_update,
}


def from_wire(wire: Mapping[str, Any]) -> JobEvent:
    """A wire dict (stored, streamed or received) back to its event; `ValueError` for a
    dict that is not a job event."""
    kind = wire.get("type")
    parse = _FROM_WIRE.get(kind) if isinstance(kind, str) else None
    if parse is None:
        raise ValueError(f"unknown job event type {kind!r}")
    try:
        return parse(wire)
    except KeyError as exc:
        raise ValueError(f"{kind} event without {exc.args[0]!r}") from None
