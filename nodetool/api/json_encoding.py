"""The one encoder for values JSON (and MessagePack) do not know, for frames and SSE events.

Datetimes become ISO-8601 text, sets lists, pydantic models their JSON dump, and in JSON bytes
are base64 text (never dropped); anything else is its `str`.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from typing import Any


def plain(value: Any) -> Any:
    """A JSON/MessagePack-native form of a value neither encoder knows."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


def json_default(value: Any) -> Any:
    """`json.dumps` hook: bytes as base64 text, other values as `plain` gives them."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return plain(value)


def compact_json(value: Any) -> str:
    """Compact JSON text (UTF-8 kept as is) of any value, through `json_default`."""
    return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":"))
