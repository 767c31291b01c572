"""Job routes of `nodetool worker` (docs/jobs.md): status, events (SSE) and cancel.

`GET /jobs/{id}` is the job record; `GET /jobs/{id}/events` streams its events as SSE, the
ones so far then live ones, ending with `data: [DONE]` after the final `job_update`;
`POST /jobs/{id}/cancel` cancels it (status `cancelled` once confirmed, else
`cancel_requested`). Any worker answers for any job: they share the store and the queue.
A client that leaves the event stream does not cancel the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter

from nodetool.api.deps import JobsDep, RuntimeDep, UserDep
from nodetool.api.sse import EventStreamResponse, sse_data
from nodetool.types.jobs import to_wire
from nodetool.workflows.jobs import JobManager

router = APIRouter(tags=["jobs"])


def job_public(record: dict[str, Any]) -> dict[str, Any]:
    """A job record as the API shows it (with `job_id` beside `id`, without `user_id`)."""
    public = {k: v for k, v in record.items() if k != "user_id"}
    public["job_id"] = record["id"]
    return public


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> dict[str, Any]:
    return job_public(await jobs.get(user_id, job_id))


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str, jobs: JobsDep, runtime: RuntimeDep, user_id: UserDep
) -> EventStreamResponse:
    await jobs.get(user_id, job_id)  # an unknown job is a plain 404
    return EventStreamResponse(
        _events(jobs, user_id, job_id), keepalive=runtime.settings.keepalive_interval
    )


async def _events(jobs: JobManager, user_id: str, job_id: str) -> AsyncIterator[str]:
    async for event in jobs.subscribe(user_id, job_id):
        yield sse_data(to_wire(event))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> dict[str, Any]:
    return job_public(await jobs.cancel(user_id, job_id))
