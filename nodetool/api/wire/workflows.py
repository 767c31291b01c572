"""Workflow and job request bodies (docs/protocol.md §8)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from nodetool.api.wire.common import WireModel, one_message

Params = Annotated[
    dict[str, Any],
    Field(description="input name -> value"),
    one_message("the body must be a JSON object of params"),
]


class GraphIn(WireModel):
    """Nodes `{id, type, data?, dynamic_properties?, sync_mode?}` of registered types; edges
    `{source, sourceHandle?, target, targetHandle}` between existing nodes and handles (the
    server checks the graph, a 400 naming the part)."""

    model_config = ConfigDict(extra="allow")

    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []


class WorkflowIn(WireModel):
    """`POST /api/workflows`, `PUT /api/workflows/{id}` (other fields are kept as given)."""

    model_config = ConfigDict(extra="allow")

    id: str | int | None = Field(None, description="empty or absent: the server assigns one")
    name: str | None = None
    description: Any = Field(None, description="kept as given")
    graph: GraphIn


class RunRequest(WireModel):
    """`POST /api/workflows/{id}/run`: the job's params and the chat thread it belongs to."""

    params: Params | None = None
    thread_id: str | None = None
