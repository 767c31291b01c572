"""`GET /api/tools` (serve): the server tools a `/chat` message may name in `tools`.

Read-only. Lists every built-in tool and the caller's `workflow_<tool_name>` tools, each with
its JSON-schema parameters and whether the server enables it by default (`--tools`), which is
what a chat message without a `tools` field gets.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from nodetool.api.deps import RuntimeDep, UserDep
from nodetool.tools.base import Tool, ToolContext

router = APIRouter(tags=["tools"])


class ToolPublic(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    kind: Literal["builtin", "workflow"]
    enabled: bool  # on by default: part of the server's --tools


class ToolList(BaseModel):
    tools: list[ToolPublic]
    default: list[str]  # the tools a chat message without `tools` gets


def _public(tool: Tool, kind: Literal["builtin", "workflow"], enabled: set[str]) -> ToolPublic:
    spec = tool.spec()
    return ToolPublic(
        name=spec.name,
        description=spec.description,
        parameters=spec.parameters,
        kind=kind,
        enabled=spec.name in enabled,
    )


@router.get("/api/tools", response_model=ToolList)
async def list_tools(runtime: RuntimeDep, user: UserDep) -> ToolList:
    settings = runtime.settings
    registry = runtime.tools
    builtins = [registry.get(name) for name in registry.names()] if registry else []
    context = ToolContext(user_id=user, settings=settings, store=runtime.store)
    family = registry.workflows if registry is not None else None
    workflows = await family.list(context) if family is not None else []
    every = [tool for tool in builtins if tool is not None] + list(workflows)
    enabled = {t.name for t in every if registry is not None and registry.allows(t.name)}
    tools = [_public(tool, "builtin", enabled) for tool in builtins if tool is not None]
    tools += [_public(tool, "workflow", enabled) for tool in workflows]
    default = registry.default_names() if registry is not None else []
    return ToolList(tools=tools, default=default)
