"""Editor workflow and job REST (docs/protocol.md §8): `/api/workflows` CRUD, run, `/api/jobs`.

Workflows are NodeTool JSON, validated on write. `POST /api/workflows/{id}/run` starts a job
(`202` with the job record); `GET /api/jobs/{id}` shows its status and results, and
`POST /api/jobs/{id}/cancel` cancels it; `GET /api/jobs` lists the user's jobs (filters
`status`, `workflow_id`; cursor paging). Live progress is on the `/predict` WebSocket.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from nodetool.api.deps import JobsDep, RuntimeDep, StoreDep, UserDep
from nodetool.api.routes.jobs import job_public, json_response
from nodetool.api.routes.threads import CursorQuery
from nodetool.api.wire.problems import request_error
from nodetool.api.wire.workflows import RunRequest, WorkflowIn
from nodetool.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from nodetool.types.jobs import JOB_STATUSES
from nodetool.workflows.graph import normalize_workflow
from nodetool.workflows.limits import WorkflowLimits, check_body_size

router = APIRouter(tags=["workflows"])
_STATUS = "|".join(JOB_STATUSES)
_STATUSES = f"^({_STATUS})(,({_STATUS}))*$"


async def _workflow_body(
    request: Request, runtime: Any, workflow_id: str | None = None
) -> dict[str, Any]:
    """The request's workflow, checked in a thread (the event loop stays free); a body over
    the graph size limit is refused unread."""
    limits = WorkflowLimits.from_settings(runtime.settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_body_size(int(declared), limits)
    raw = await request.body()
    check_body_size(len(raw), limits)
    return await asyncio.to_thread(_parse_workflow, raw, limits, workflow_id)


def _parse_workflow(raw: bytes, limits: WorkflowLimits, workflow_id: str | None) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequestError(f"the body is not valid JSON: {exc}", param="body") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a workflow object", param="body")
    try:
        WorkflowIn.model_validate(body)
    except ValidationError as exc:
        raise request_error(exc, WorkflowIn) from None
    body = dict(body)
    if workflow_id is not None:
        given = body.get("id")
        if given is not None and (not isinstance(given, str | int) or isinstance(given, bool)):
            raise InvalidRequestError("workflow id must be a string", param="id")
        body["id"] = workflow_id
    return normalize_workflow(body, slug_id=False, limits=limits)


async def _own(store: Any, user_id: str, workflow_id: str) -> dict[str, Any]:
    workflow = await store.workflows.get(user_id, workflow_id)
    if workflow is None:
        raise NotFoundError(f"workflow {workflow_id!r} not found", param="id")
    return workflow


@router.get("/api/workflows")
async def list_workflows(store: StoreDep, user_id: UserDep) -> dict[str, Any]:
    return {"workflows": await store.workflows.list(user_id)}


@router.post("/api/workflows", status_code=201)
async def create_workflow(
    request: Request, store: StoreDep, runtime: RuntimeDep, user_id: UserDep
) -> JSONResponse:
    workflow = await store.workflows.upsert(user_id, await _workflow_body(request, runtime))
    return JSONResponse(workflow, status_code=201)  # plain JSON: no per-value encoder walk


@router.get("/api/workflows/{workflow_id}")
async def get_workflow(workflow_id: str, store: StoreDep, user_id: UserDep) -> JSONResponse:
    return JSONResponse(await _own(store, user_id, workflow_id))


@router.put("/api/workflows/{workflow_id}")
async def put_workflow(
    workflow_id: str, request: Request, store: StoreDep, runtime: RuntimeDep, user_id: UserDep
) -> JSONResponse:
    workflow = await _workflow_body(request, runtime, workflow_id)
    return JSONResponse(await store.workflows.upsert(user_id, workflow))


@router.delete("/api/workflows/{workflow_id}")
async def delete_workflow(workflow_id: str, store: StoreDep, user_id: UserDep) -> dict[str, Any]:
    workflow = await _own(store, user_id, workflow_id)
    if workflow.get("user_id") is None:
        raise PermissionDeniedError(f"workflow {workflow_id!r} is shared and read-only")
    await store.workflows.delete(user_id, workflow_id)
    return {"id": workflow_id, "deleted": True}


@router.post("/api/workflows/{workflow_id}/run", status_code=202)
async def run_workflow(
    workflow_id: str, jobs: JobsDep, user_id: UserDep, body: RunRequest | None = Body(None)
) -> dict[str, Any]:
    """Start a job; the body is `{params?, thread_id?}`."""
    body = body or RunRequest()
    record = await jobs.start_job(
        user_id, workflow_id=workflow_id, params=body.params, thread_id=body.thread_id
    )
    return job_public(record)


@router.get("/api/jobs")
async def list_jobs(
    jobs: JobsDep,
    user_id: UserDep,
    status: str | None = Query(
        None, pattern=_STATUSES, description="one or more job statuses, comma separated"
    ),
    workflow_id: str | None = Query(None, max_length=128),
    cursor: str | None = CursorQuery,
    limit: int = Query(50, ge=1, le=1000),
) -> Response:
    """The user's jobs from every process, newest first: `{jobs, next}` (`next`: cursor)."""
    page, following = await jobs.list(
        user_id, status=status, workflow_id=workflow_id, cursor=cursor, limit=limit
    )
    return await json_response({"jobs": [job_public(r) for r in page], "next": following})


@router.get("/api/jobs/{job_id}")
async def get_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> Response:
    return await json_response(job_public(await jobs.get(user_id, job_id)))


@router.post("/api/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep, user_id: UserDep) -> Response:
    return await json_response(job_public(await jobs.cancel(user_id, job_id)))
