"""Chat messages and tool calls in OpenAI's shape (content as text or content parts)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"  # JSON text, exactly as the model produced it


class ToolCall(BaseModel):
    """An assistant's call of a tool (OpenAI shape)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    @property
    def name(self) -> str:
        return self.function.name

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments as a dict; invalid or non-object JSON raises ValueError."""
        raw = self.function.arguments or "{}"
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value


class Message(BaseModel):
    """One chat message. `content` is a string, a list of content parts, or None."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: the string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class ToolSpec(BaseModel):
    """A tool offered to the model: name, description, JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def openai(self) -> dict[str, Any]:
        """The OpenAI `tools[]` entry for this spec."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ChatOptions(BaseModel):
    """Sampling and request options passed to a provider."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    # return per-token log probabilities (and the `top_logprobs` most likely alternatives)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # hints for reasoning models ("low", "medium", ...); providers whose models do not reason
    # ignore them (documented in docs/openai-fields.md)
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # a hint: False when the caller wants the whole answer at once (providers may ignore it)
    stream: bool = True


class ModelInfo(BaseModel):
    """A model as listed by `/v1/models`."""

    id: str
    provider: str
    created: int = 0
    owned_by: str = ""
    status: str | None = None  # why the model cannot serve right now (None: it can)
    # what the model serves: "chat" (chat + legacy completions) and/or "embeddings"
    capabilities: list[str] = Field(default_factory=lambda: ["chat"])
    alias_of: str | None = None  # set for a model alias: the target it routes like
