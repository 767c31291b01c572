"""Typed dependencies: the runtime's parts and the authenticated user, from lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from nodetool.api.request_user import user_id_of
from nodetool.errors import ProviderUnavailableError
from nodetool.runtime import Runtime
from nodetool.storage.base import Store
from nodetool.workflows.jobs import JobManager


def get_runtime(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime


def get_user_id(conn: HTTPConnection) -> str:
    """The user the auth middleware authenticated (`DEFAULT_USER` when auth is off)."""
    return user_id_of(conn.scope)


def get_store(conn: HTTPConnection) -> Store:
    store = get_runtime(conn).store
    if store is None:
        raise ProviderUnavailableError("this server has no storage")
    return store


def get_jobs(conn: HTTPConnection) -> JobManager:
    jobs = get_runtime(conn).jobs
    if jobs is None:
        raise ProviderUnavailableError("this server does not run workflows")
    return jobs


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
UserDep = Annotated[str, Depends(get_user_id)]
StoreDep = Annotated[Store, Depends(get_store)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]

__all__ = [
    "Request",
    "RuntimeDep",
    "UserDep",
    "StoreDep",
    "JobsDep",
]
