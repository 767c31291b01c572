"""Stored workflows as tools: `workflow_<tool_name>` for chat and `/api/tools`, and every
workflow (named after its tool_name, else its name) for MCP.

A tool's arguments are the workflow's inputs as their node classes describe them
(`params.input_nodes`): the JSON schema is `InputNode.param_schema`, a value is checked by
`InputNode.coerce` and the schema's bounds, an input without a default is required, and any
other argument is refused. The result is the workflow's outputs dict, from the job manager.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model

from nodetool.errors import NodetoolError, ToolError, WorkflowError
from nodetool.tools.base import Tool, ToolContext
from nodetool.tools.registry import WORKFLOW_PREFIX
from nodetool.workflows.graph import Graph
from nodetool.workflows.params import input_nodes

if TYPE_CHECKING:
    from nodetool.workflows.jobs import JobManager
    from nodetool.workflows.nodes.io import InputNode

_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64  # OpenAI's limit for function names


def tool_name_of(workflow: dict[str, Any]) -> str | None:
    """The `workflow_<tool_name>` name of a stored workflow, or None when it has no tool_name."""
    raw = workflow.get("tool_name")
    if not isinstance(raw, str) or not raw.strip():
        return None
    return (WORKFLOW_PREFIX + _INVALID.sub("_", raw.strip()))[:_MAX_NAME]


def any_tool_name(workflow: dict[str, Any]) -> str:
    """`workflow_<tool_name>`, else `workflow_<name>` (else the id) for any workflow."""
    named = tool_name_of(workflow)
    if named is not None:
        return named
    raw = str(workflow.get("name") or workflow.get("id") or "workflow").strip()
    return (WORKFLOW_PREFIX + _INVALID.sub("_", raw))[:_MAX_NAME]


def _checker(cls: type[InputNode], schema: dict[str, Any]) -> Any:
    """The input's own coercion, then the bounds its schema states."""
    low, high = schema.get("minimum"), schema.get("maximum")

    def check(value: Any) -> Any:
        value = cls.coerce(value)
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}")
        return value

    return check


def args_model(workflow: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model of the workflow's inputs (extra arguments are refused); a graph that
    does not parse raises `WorkflowError`."""
    graph = Graph.from_dict(workflow.get("graph") or {})
    fields: dict[str, tuple[Any, Any]] = {}
    seen: set[str] = set()
    for node, cls in input_nodes(graph):
        if node.name in seen:
            continue  # one param feeds every input of that name
        seen.add(node.name)
        schema = cls.param_schema(node.data)
        annotation = Annotated[Any, BeforeValidator(_checker(cls, schema)), WithJsonSchema(schema)]
        default = cls.param_default(node.data)
        required = default is None or default == ""
        description = node.data.get("description") or node.data.get("label") or None
        info = Field(... if required else default, alias=node.name, description=description)
        fields[f"input_{len(fields)}"] = (annotation, info)
    return create_model(  # type: ignore[call-overload]
        "WorkflowArgs", __config__=ConfigDict(extra="forbid"), **fields
    )


class WorkflowTool(Tool):
    """Runs one stored workflow to completion through the job manager."""

    timeout = 300.0

    def __init__(
        self, workflow: dict[str, Any], jobs: JobManager | None, name: str | None = None
    ) -> None:
        name = name or tool_name_of(workflow)
        if name is None:
            raise ValueError("workflow has no tool_name")
        self.jobs = jobs
        self.workflow_id = str(workflow.get("id") or "")
        self.name = name  # type: ignore[misc]
        title = workflow.get("name") or self.workflow_id
        about = workflow.get("description") or ""
        self.description = f"Run the workflow '{title}'." + (f" {about}" if about else "")  # type: ignore[misc]
        self.invalid: str | None = None
        try:
            self.Args = args_model(workflow)  # type: ignore[misc]
        except WorkflowError as exc:  # stored before validation existed, or by another writer
            self.invalid = exc.message
            self.Args = create_model("WorkflowArgs", __config__=ConfigDict(extra="forbid"))  # type: ignore[misc]

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        if self.jobs is None:
            raise ToolError("workflows are not available on this server")
        if self.invalid is not None:
            raise ToolError(f"workflow failed: {self.invalid}")
        params = args.model_dump(by_alias=True, exclude_unset=True)
        try:
            return await self.jobs.run_to_completion(
                context.user_id, workflow_id=self.workflow_id, params=params
            )
        except NodetoolError as exc:
            raise ToolError(f"workflow failed: {exc.message}") from None


class WorkflowTools:
    """The `workflow_*` tool family (the tool registry's source of workflow tools; also what
    `/api/tools` and MCP list): the workflows of the context's store, run by `jobs`."""

    def __init__(self, jobs: JobManager | None) -> None:
        self.jobs = jobs

    async def _workflows(self, context: ToolContext) -> list[dict[str, Any]]:
        store = context.store
        return [] if store is None else await store.workflows.list(context.user_id)

    async def find(self, name: str, context: ToolContext) -> Tool | None:
        """The `workflow_<tool_name>` tool of the context's user, or None."""
        if not name.startswith(WORKFLOW_PREFIX):
            return None
        for workflow in await self._workflows(context):
            if tool_name_of(workflow) == name:
                return WorkflowTool(workflow, self.jobs)
        return None

    async def list(self, context: ToolContext) -> list[Tool]:
        """A tool for every workflow the user can see that has a tool_name (first per name)."""
        tools: dict[str, Tool] = {}
        for workflow in await self._workflows(context):
            name = tool_name_of(workflow)
            if name is not None and name not in tools:
                tools[name] = WorkflowTool(workflow, self.jobs)
        return list(tools.values())

    async def every(self, context: ToolContext) -> list[Tool]:
        """A tool for every workflow the user can see (first per name), tool_name or not:
        what `nodetool mcp` offers. None without a job manager to run them."""
        if self.jobs is None:
            return []
        tools: dict[str, Tool] = {}
        for workflow in await self._workflows(context):
            name = any_tool_name(workflow)
            if name not in tools:
                tools[name] = WorkflowTool(workflow, self.jobs, name)
        return list(tools.values())
