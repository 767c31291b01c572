"""Job routes of `nodetool worker` (docs/jobs.md): status, events (SSE) and cancel.

`GET /jobs/{id}` is the job record; `GET /jobs/{id}/events` streams its events as SSE, the
ones so far then live ones, ending with `data: [DONE]` after the final `job_update`;
`POST /jobs/{id}/cancel` cancels it (status `cancelled` once confirmed, else
`cancel_requested`). Any worker answers for any job: they share the store and the queue.
A client that leaves the event stream does not cancel the job.

A job's results may be tens of megabytes: records and events that large are encoded as JSON
in a thread and in pieces (`storage/large_json.py`), so other requests are not held up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from nodetool.api.deps import JobsDep, RuntimeDep, UserDep
from nodetool.api.json_encoding import compact_json, json_default
from nodetool.api.sse import EventStreamResponse, sse_data
from nodetool.storage.large_json import encode_in_pieces, json_is_large, utf8_in_pieces
from nodetool.types.jobs import to_wire
from nodetool.workflows.jobs import JobManager

router = APIRouter(tags=["jobs"])
_JSON = "application/json"


async def json_text(value: Any) -> str:
    """`compact_json(value)`; a large value is encoded in a thread, in pieces."""
    if json_is_large(value):
        return await asyncio.to_thread(encode_in_pieces, value, json_default)
    return compact_json(value)


async def json_response(value: Any, status_code: int = 200) -> Response:
    """A JSON response of a value that may be large (encoded off the event loop)."""
    if not json_is_large(value):
        return Response(compact_json(value), status_code=status_code, media_type=_JSON)

    def encode() -> bytes:
        return utf8_in_pieces(encode_in_pieces(value, json_default))

    body = await asyncio.to_thread(encode)
    return Response(body, status_code=status_code, media_type=_JSON)


async def sse_event(payload: Any) -> str:
    """`sse_data(payload)` of a payload that may be large (encoded off the event loop)."""
    if json_is_large(payload):
        return f"data: {await json_text(payload)}\n\n"
    return sse_data(payload)


def job_public(record: dict[str, Any]) -> dict[str, Any]:
    """A job record as the API shows it (with `job_id` beside `id`, without `user_id`)."""
    public = {k: v for k, v in record.items() if k != "user_id"}
    public["job_id"] = record["id"]
    return public


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> Response:
    return await json_response(job_public(await jobs.get(user_id, job_id)))


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
        yield await sse_event(to_wire(event))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> Response:
    return await json_response(job_public(await jobs.cancel(user_id, job_id)))
