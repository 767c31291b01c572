"""Client frames of the `/chat` WebSocket (docs/protocol.md §4) and their validation.

Fields are checked strictly (a number is not a string): a frame with a wrong field type is
answered with an `error` frame naming the field, never coerced or dropped.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nodetool.api.ws_codec import FrameError
from nodetool.types.validation import first_problem

_STRICT = ConfigDict(extra="ignore", strict=True)
_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"

M = TypeVar("M", bound=BaseModel)


class ChatMessageIn(BaseModel):
    """`{role:"user", content, thread_id?, model?, provider?, tools?, workflow_id?, graph?,
    params?}` (`type:"message"` optional)."""

    model_config = _STRICT

    type: Literal["message"] | None = None
    role: Literal["user"] = "user"
    content: Any = None  # str | list of content-part objects, checked below
    thread_id: str | None = Field(None, min_length=1, max_length=128)
    model: str | None = None
    provider: str | None = None
    tools: list[str] | None = None
    workflow_id: str | None = Field(None, min_length=1)
    graph: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(part, dict) for part in value):
            return value
        raise ValueError("must be a string or a list of content-part objects")


class ClientToolIn(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=_TOOL_NAME)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ClientToolsManifestIn(BaseModel):
    """`{type:"client_tools_manifest", tools:[{name, description, parameters}]}`."""

    model_config = _STRICT

    tools: list[ClientToolIn]


class ToolResultIn(BaseModel):
    """`{type:"tool_result", tool_call_id, ok, result?, error?}`."""

    model_config = _STRICT

    tool_call_id: str = Field(min_length=1)
    ok: bool | None = None
    result: Any = None
    error: str | None = None

    @property
    def is_ok(self) -> bool:
        return self.ok if self.ok is not None else self.error is None


def invalid(message: str) -> FrameError:
    return FrameError(message, "invalid_frame")


def parse(model: type[M], data: dict[str, Any], what: str) -> M | FrameError:
    """Validate `data` as `model`; a `FrameError` naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = first_problem(exc, model)
        return invalid(f"invalid {what}: {problem.param or 'frame'}: {problem.message}")
