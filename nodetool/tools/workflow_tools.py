"""Stored workflows with a `tool_name` as tools named `workflow_<tool_name>`.

Arguments are the workflow's input nodes (`nodetool.input.*Input`, keyed by `data.name`), typed
from the node type; the result is the workflow's outputs dict, produced by the job manager.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from nodetool.errors import NodetoolError, ToolError
from nodetool.tools.base import Tool, ToolContext

PREFIX = "workflow_"
INPUT_PREFIX = "nodetool.input."
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64  # OpenAI's limit for function names

_TYPES: dict[str, Any] = {
    "IntegerInput": int,
    "FloatInput": float,
    "BooleanInput": bool,
    "StringInput": str,
    "TextInput": str,
    "MessageInput": str,
    "ChatInput": str,
    "FilePathInput": str,
    "FolderPathInput": str,
    "ColorInput": str,
    "StringListInput": list[str],
}


def tool_name_of(workflow: dict[str, Any]) -> str | None:
    """The `workflow_<tool_name>` name of a stored workflow, or None when it has no tool_name."""
    raw = workflow.get("tool_name")
    if not isinstance(raw, str) or not raw.strip():
        return None
    return (PREFIX + _INVALID.sub("_", raw.strip()))[:_MAX_NAME]


def input_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's input nodes, in graph order."""
    graph = workflow.get("graph") or {}
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    return [
        node
        for node in nodes or []
        if isinstance(node, dict) and str(node.get("type", "")).startswith(INPUT_PREFIX)
    ]


def _field(node: dict[str, Any]) -> tuple[str, tuple[Any, Any]] | None:
    data = node.get("data") or {}
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return None
    kind = str(node["type"])[len(INPUT_PREFIX) :]
    annotation: Any = _TYPES.get(kind, Any)
    options = data.get("options")
    if kind == "EnumInput":
        if isinstance(options, str):
            options = [part.strip() for part in options.split(",") if part.strip()]
        if isinstance(options, list) and options and all(isinstance(o, str) for o in options):
            annotation = Literal[tuple(options)]  # type: ignore[valid-type]
        else:
            annotation = str
    constraints: dict[str, Any] = {}
    if annotation in (int, float):
        for key, bound in (("min", "ge"), ("max", "le")):
            if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool):
                constraints[bound] = data[key]
    default = data.get("value")
    required = default is None or default == ""
    description = data.get("description") or data.get("label") or None
    info = Field(... if required else default, alias=name, description=description, **constraints)
    return name, (annotation, info)


def args_model(workflow: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model of the workflow's inputs (extra arguments are refused)."""
    fields: dict[str, tuple[Any, Any]] = {}
    seen: set[str] = set()
    for node in input_nodes(workflow):
        item = _field(node)
        if item is None or item[0] in seen:
            continue
        seen.add(item[0])
        fields[f"input_{len(fields)}"] = item[1]
    return create_model(  # type: ignore[call-overload]
        "WorkflowArgs", __config__=ConfigDict(extra="forbid"), **fields
    )


class WorkflowTool(Tool):
    """Runs one stored workflow to completion through the job manager."""

    timeout = 300.0

    def __init__(self, workflow: dict[str, Any], name: str | None = None) -> None:
        name = name or tool_name_of(workflow)
        if name is None:
            raise ValueError("workflow has no tool_name")
        self.workflow_id = str(workflow.get("id") or "")
        self.name = name  # type: ignore[misc]
        title = workflow.get("name") or self.workflow_id
        about = workflow.get("description") or ""
        self.description = f"Run the workflow '{title}'." + (f" {about}" if about else "")  # type: ignore[misc]
        self.Args = args_model(workflow)  # type: ignore[misc]

    async def run(self, context: ToolContext, args: BaseModel) -> Any:
        if context.jobs is None:
            raise ToolError("workflows are not available on this server")
        params = args.model_dump(by_alias=True, exclude_unset=True)
        try:
            return await context.jobs.run_to_completion(
                context.user_id, workflow_id=self.workflow_id, params=params
            )
        except NodetoolError as exc:
            raise ToolError(f"workflow failed: {exc.message}") from None


async def list_workflow_tools(context: ToolContext) -> list[Tool]:
    """A tool for every workflow the user can see that has a tool_name (first one per name)."""
    if context.store is None:
        return []
    tools: dict[str, Tool] = {}
    for workflow in await context.store.workflows.list(context.user_id):
        name = tool_name_of(workflow)
        if name is not None and name not in tools:
            tools[name] = WorkflowTool(workflow)
    return list(tools.values())


def any_tool_name(workflow: dict[str, Any]) -> str:
    """`workflow_<tool_name>`, else `workflow_<name>` (else the id) for any workflow."""
    named = tool_name_of(workflow)
    if named is not None:
        return named
    raw = str(workflow.get("name") or workflow.get("id") or "workflow").strip()
    return (PREFIX + _INVALID.sub("_", raw))[:_MAX_NAME]


async def all_workflow_tools(context: ToolContext) -> list[Tool]:
    """A tool for every workflow the user can see (first one per name): what `nodetool mcp`
    offers, whether or not the workflow has a tool_name."""
    if context.store is None or context.jobs is None:
        return []
    tools: dict[str, Tool] = {}
    for workflow in await context.store.workflows.list(context.user_id):
        name = any_tool_name(workflow)
        if name not in tools:
            tools[name] = WorkflowTool(workflow, name)
    return list(tools.values())


async def find_workflow_tool(name: str, context: ToolContext) -> Tool | None:
    """The `workflow_<tool_name>` tool for the context's user, or None."""
    if not name.startswith(PREFIX) or context.store is None:
        return None
    for workflow in await context.store.workflows.list(context.user_id):
        if tool_name_of(workflow) == name:
            return WorkflowTool(workflow)
    return None
