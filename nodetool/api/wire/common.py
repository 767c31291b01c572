"""Pieces shared by the wire models: the base config, one-message validators, usage, errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError


class WireModel(BaseModel):
    """A request body part: strict JSON types, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)


class OutModel(BaseModel):
    """A response body part (documentation of what the builders write)."""


def one_message(message: str) -> WrapValidator:
    """Any failure of the annotated value reads `message` (a union's member errors are noise)."""

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("value_error", message) from None

    return WrapValidator(validate)


def _not_a_bool(value: Any) -> Any:
    if type(value) is bool:
        raise PydanticCustomError("literal_error", "Input should be 1")
    return value


# the integer 1 (`n`, `best_of`): pydantic's `Literal[1]` alone takes JSON `true` as well
One = Annotated[Literal[1], BeforeValidator(_not_a_bool)]


class Usage(OutModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorBody(OutModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(OutModel):
    """`{"error": {"message", "type", "param", "code"}}`: every error nodetool answers."""

    error: ErrorBody


class StreamOptions(WireModel):
    include_usage: bool | None = None
