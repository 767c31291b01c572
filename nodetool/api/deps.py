"""Typed dependencies: the runtime's parts and the authenticated user, from lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from nodetool.chat.engine import ChatEngine
from nodetool.errors import ProviderUnavailableError
from nodetool.providers.registry import ProviderRegistry
from nodetool.runtime import Runtime
from nodetool.storage.base import Store
from nodetool.workflows.jobs import JobManager


def get_runtime(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime


def get_user_id(conn: HTTPConnection) -> str:
    """The user the auth middleware authenticated (`"1"` when auth is off)."""
    return conn.scope.get("state", {}).get("user_id", "1")


def get_store(conn: HTTPConnection) -> Store:
    store = get_runtime(conn).store
    if store is None:
        raise ProviderUnavailableError("this server has no storage")
    return store


def get_engine(conn: HTTPConnection) -> ChatEngine:
    engine = get_runtime(conn).engine
    assert engine is not None
    return engine


def get_providers(conn: HTTPConnection) -> ProviderRegistry:
    providers = get_runtime(conn).providers
    assert providers is not None
    return providers


def get_jobs(conn: HTTPConnection) -> JobManager:
    jobs = get_runtime(conn).jobs
    if jobs is None:
        raise ProviderUnavailableError("this server does not run workflows")
    return jobs


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
UserDep = Annotated[str, Depends(get_user_id)]
StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[ChatEngine, Depends(get_engine)]
ProvidersDep = Annotated[ProviderRegistry, Depends(get_providers)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]

__all__ = [
    "Request",
    "RuntimeDep",
    "UserDep",
    "StoreDep",
    "EngineDep",
    "ProvidersDep",
    "JobsDep",
]
