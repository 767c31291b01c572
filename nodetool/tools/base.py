"""The Tool protocol, the context a tool runs in, its outcome, and tool families."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from nodetool.types.messages import ToolSpec

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.storage.base import Store


@dataclass(slots=True)
class ToolContext:
    """Who runs a tool and with which resources."""

    user_id: str
    settings: Settings
    store: Store | None = None
    thread_id: str | None = None

    @property
    def workspace(self) -> Path:
        """The user's file workspace in the data dir (created on demand by file tools)."""
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.user_id)
        return self.settings.data_dir / "workspaces" / (safe or "_")


@dataclass(slots=True)
class ToolOutcome:
    """A tool's result as the model sees it: `ok` with a JSON-safe `result`, or an `error`."""

    ok: bool
    result: Any = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def content(self) -> str:
        """The tool message content fed back to the model."""
        import json

        if not self.ok:
            return json.dumps({"ok": False, "error": self.error})
        if isinstance(self.result, str):
            return self.result
        return json.dumps(self.result, ensure_ascii=False, default=str)


class Tool:
    """Base class: subclasses set name, description, Args (a pydantic model) and implement run().

    Parameters are the JSON schema generated from `Args`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Args: ClassVar[type[BaseModel]]
    timeout: ClassVar[float] = 30.0

    def parameters(self) -> dict[str, Any]:
        schema = self.Args.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters())

    async def run(self, context: ToolContext, args: BaseModel) -> Any:  # pragma: no cover
        raise NotImplementedError


class ToolFamily(Protocol):
    """Tools made per user on demand and found by name (stored workflows: `workflow_*`);
    the layer that owns them implements this and hands it to the registry."""

    async def find(self, name: str, context: ToolContext) -> Tool | None:
        """The tool called `name` for the context's user, or None."""
        ...

    async def list(self, context: ToolContext) -> list[Tool]:
        """The family's tools the context's user may name."""
        ...
