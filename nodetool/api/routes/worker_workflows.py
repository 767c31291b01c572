"""Worker workflow endpoints (docs/protocol.md §8): list, run, and run with an SSE stream.

`POST /workflows/{id}/run` takes the params object as its body and answers `{results}`.
`POST /workflows/{id}/run/stream` answers `text/event-stream`: the job's `job_update`,
`node_update`, `node_progress` and `output_update` events, then `{type: complete, results}`
(or one `{error}` event when the job failed or was cancelled) and `data: [DONE]`, with the
keep-alives and error envelope of every SSE route (`api/sse.py`). Params and graph are checked
before the stream starts, so bad input is a plain 400. A client going away cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import Response

from nodetool.api.deps import JobsDep, RuntimeDep, StoreDep, UserDep
from nodetool.api.routes.jobs import json_response, sse_event
from nodetool.api.sse import EventStreamResponse
from nodetool.api.wire.workflows import Params
from nodetool.errors import NodetoolError, WorkflowError
from nodetool.types.jobs import JobUpdate, is_terminal, to_wire
from nodetool.workflows.graph import Graph
from nodetool.workflows.jobs import JobManager
from nodetool.workflows.params import describe_inputs, output_names

log = logging.getLogger("nodetool.worker_workflows")

router = APIRouter(tags=["workflows"])


def _summary(workflow: dict[str, Any]) -> dict[str, Any]:
    summary = {
        key: workflow.get(key)
        for key in ("id", "name", "description", "tool_name", "tags", "updated_at")
    }
    try:
        graph = Graph.from_dict(workflow.get("graph") or {})
        summary["inputs"] = describe_inputs(graph)
        summary["outputs"] = output_names(graph)
    except WorkflowError as exc:  # stored before validation existed, or by another writer
        summary["error"] = exc.message
    return summary


@router.get("/workflows")
async def list_workflows(store: StoreDep, user_id: UserDep) -> dict[str, Any]:
    return {"workflows": [_summary(w) for w in await store.workflows.list(user_id)]}


@router.post("/workflows/{workflow_id}/run")
async def run_workflow(
    workflow_id: str, jobs: JobsDep, user_id: UserDep, body: Params | None = Body(None)
) -> Response:
    """Run to the end; the body is the params object; answers `{results}`."""
    results = await jobs.run_to_completion(user_id, workflow_id=workflow_id, params=body or {})
    return await json_response({"results": results})


@router.post("/workflows/{workflow_id}/run/stream")
async def run_workflow_stream(
    workflow_id: str,
    jobs: JobsDep,
    runtime: RuntimeDep,
    user_id: UserDep,
    body: Params | None = Body(None),
) -> EventStreamResponse:
    record = await jobs.start_job(user_id, workflow_id=workflow_id, params=body or {})
    return EventStreamResponse(
        _events(jobs, user_id, record["id"]), keepalive=runtime.settings.keepalive_interval
    )


async def _events(jobs: JobManager, user_id: str, job_id: str) -> AsyncIterator[str]:
    """The job's events, then `complete`; a failed or cancelled job raises its error (the
    stream's error event). A client that leaves cancels the job."""
    finished = False
    try:
        async with aclosing(jobs.subscribe(user_id, job_id)) as events:
            async for event in events:
                yield await sse_event(to_wire(event))
                if isinstance(event, JobUpdate) and is_terminal(event):
                    finished = True
                    if event.status != "completed":
                        raise _job_error(event)
                    yield await sse_event({"type": "complete", "results": event.result or {}})
                    return
    finally:
        if not finished:  # the client went away: its job goes too
            with contextlib.suppress(Exception):
                await asyncio.shield(jobs.cancel(user_id, job_id))


class JobCancelledError(NodetoolError):
    """The streamed job was cancelled (by `POST /jobs/{id}/cancel` or a shutdown)."""

    type = "cancelled"
    code = "cancelled"


def _job_error(event: JobUpdate) -> NodetoolError:
    message = str(event.error or f"job {event.status}")
    if event.status == "failed":
        return WorkflowError(message, code="workflow_failed")
    return JobCancelledError(message)
