"""Build a pydantic model from values already validated, without validating them again.

`BaseModel.model_construct` skips validation but, in Python, walks every field, its alias and
its default on each call: several times the cost of validating again. `trusted(cls, values)`
stores `values` as they are; the caller passes every field of `cls`, in its declared order
(so `model_fields_set`, equality, `repr` and dumps match `model_construct(**values)`'s).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` holding `values` (every field, unvalidated; no extras)."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
