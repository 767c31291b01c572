"""A validation problem phrased as OpenAI phrases it: a 400 `InvalidRequestError` with `param`.

Used for every request body the API validates: the `/v1` hot routes (`parse_body`) and FastAPI's
own validation of the other routes (`api/errors.py`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from nodetool.errors import InvalidRequestError
from nodetool.types.validation import Problem, first_problem

M = TypeVar("M", bound=BaseModel)

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_request(problem: Problem) -> InvalidRequestError:
    """The 400 for `problem`."""
    kind, param, ctx = problem.kind, problem.param, problem.ctx
    if kind == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. "
            "(The API expects a JSON payload, but what was sent was not valid JSON.)"
        )
    if kind in ("union_tag_invalid", "union_tag_not_found") and ctx:
        field = str(ctx.get("discriminator", "")).strip("'")
        param = f"{param}.{field}" if param else field
        if kind == "union_tag_not_found":
            kind = "missing"
        else:
            return InvalidRequestError(
                f"Invalid value: {ctx.get('tag')!r}. Supported values are: "
                f"{ctx.get('expected_tags')}.",
                param=param,
                code="invalid_value",
            )
    if param is None:
        if kind in _TYPE_NAMES:
            return InvalidRequestError(
                "The request body must be a JSON object.", code="invalid_type"
            )
        return InvalidRequestError(f"Invalid request body: {problem.message}.")
    if kind == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind in _TYPE_NAMES:
        return InvalidRequestError(
            f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got "
            f"{_json_type(problem.input)} instead.",
            param=param,
            code="invalid_type",
        )
    if kind == "too_short" and isinstance(problem.input, list) and not problem.input:
        return InvalidRequestError(
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=param,
            code="empty_array",
        )
    return InvalidRequestError(
        f"Invalid '{param}': {problem.message}.", param=param, code="invalid_value"
    )


def request_error(
    exc: ValidationError, model: type[BaseModel] | None = None
) -> InvalidRequestError:
    """The first error of validating a request body (against `model`) as a 400."""
    return invalid_request(first_problem(exc, model))


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON request body (empty: `{}`); every problem is a 400 naming the field."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise request_error(exc, model) from None
