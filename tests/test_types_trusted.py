"""`trusted` builds the same model as `model_construct` given every field."""

from __future__ import annotations

from nodetool.types.messages import ChatOptions, Message
from nodetool.types.trusted import trusted


def test_trusted_matches_model_construct() -> None:
    values = {name: None for name in ChatOptions.model_fields}
    values.update(temperature=0.5, stop=["x"], stream=False)
    for cls, fields in (
        (ChatOptions, values),
        (
            Message,
            {
                "role": "user",
                "content": "hi",
                "name": None,
                "tool_calls": None,
                "tool_call_id": None,
            },
        ),
    ):
        built, constructed = trusted(cls, dict(fields)), cls.model_construct(**fields)
        assert built == constructed
        assert repr(built) == repr(constructed)
        assert built.model_fields_set == constructed.model_fields_set == set(fields)
        assert built.model_dump() == constructed.model_dump()
        assert built.model_copy(update={"name": "n"} if cls is Message else {"seed": 1}) != built
