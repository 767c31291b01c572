"""Worker workflow endpoints (docs/protocol.md §8): list, run, and run with an SSE stream.

`POST /workflows/{id}/run` takes the params object as its body and answers `{results}`.
`POST /workflows/{id}/run/stream` answers `text/event-stream`: the job's `job_update`,
`node_update`, `node_progress` and `output_update` events, then `{type: complete, results}`
(or one `{error}` event when the job failed) and `data: [DONE]`. Params and graph are checked
before the stream starts, so bad input is a plain 400. A client going away cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse

from nodetool.api.deps import JobsDep, RuntimeDep, StoreDep, UserDep
from nodetool.api.routes.jobs import sse_data
from nodetool.errors import InvalidRequestError, WorkflowError
from nodetool.types.jobs import JobEvent, JobUpdate, is_terminal, to_wire
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


def _params(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object of params", param="body")
    return body


@router.get("/workflows")
async def list_workflows(store: StoreDep, user_id: UserDep) -> dict[str, Any]:
    return {"workflows": [_summary(w) for w in await store.workflows.list(user_id)]}


@router.post("/workflows/{workflow_id}/run")
async def run_workflow(
    workflow_id: str, jobs: JobsDep, user_id: UserDep, body: Any = Body(None)
) -> dict[str, Any]:
    results = await jobs.run_to_completion(user_id, workflow_id=workflow_id, params=_params(body))
    return {"results": results}


@router.post("/workflows/{workflow_id}/run/stream")
async def run_workflow_stream(
    workflow_id: str,
    jobs: JobsDep,
    runtime: RuntimeDep,
    user_id: UserDep,
    body: Any = Body(None),
) -> StreamingResponse:
    record = await jobs.start_job(user_id, workflow_id=workflow_id, params=_params(body))
    stream = _sse(jobs, user_id, record["id"], runtime.settings.keepalive_interval)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(jobs: JobManager, user_id: str, job_id: str, keepalive: float) -> AsyncIterator[str]:
    events = jobs.subscribe(user_id, job_id)
    pending: asyncio.Future[JobEvent] | None = None
    finished = False
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield ": keep-alive\n\n"
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            yield sse_data(to_wire(event))
            if is_terminal(event):
                finished = True
                yield sse_data(_ending(event))
                break
        yield "data: [DONE]\n\n"
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        with contextlib.suppress(Exception):
            await events.aclose()
        if not finished:  # the client went away: its job goes too
            with contextlib.suppress(Exception):
                await asyncio.shield(jobs.cancel(user_id, job_id))


def _ending(event: JobUpdate) -> dict[str, Any]:
    if event.status == "completed":
        return {"type": "complete", "results": event.result or {}}
    message = event.error or f"job {event.status}"
    failed = event.status == "failed"
    return {
        "error": {
            "message": str(message),
            "type": "invalid_request_error" if failed else "cancelled",
            "param": None,
            "code": "workflow_failed" if failed else "cancelled",
        }
    }
