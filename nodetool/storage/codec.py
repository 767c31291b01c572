"""Value conversions shared by the SQL stores: JSON text, UTC timestamps, cursors, checks.

JSON that may be large (a job's results, an event carrying them) is encoded and decoded in a
thread (`dumps_off_loop`, `loads_off_loop`; see `large_json`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from nodetool.errors import InvalidRequestError
from nodetool.storage.ids import MAX_ID_LENGTH
from nodetool.storage.large_json import (
    OFF_LOOP_BYTES,
    JsonTooLong,
    encode_in_pieces,
    json_is_large,
)

MAX_PAGE = 1000
_COMPACT = (",", ":")


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z` suffix; naive values (SQLite) are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str:
    """JSON text; pydantic models are dumped first. Unserialisable values are a 400."""
    try:
        return json.dumps(value, separators=_COMPACT, ensure_ascii=False, default=_model)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"value is not JSON-serialisable: {exc}") from None


def dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class JsonText(str):
    """JSON text encoded already (e.g. to check its size first): stored as it is. `value` is
    what it encodes (a store may hand that back instead of decoding the text again)."""

    value: Any

    def __new__(cls, text: str, value: Any = None) -> JsonText:
        made = super().__new__(cls, text)
        made.value = value
        return made


async def dumps_off_loop(value: Any, limit: int | None = None) -> str:
    """`dumps`; a large value is encoded in a thread, in pieces (`large_json`), so the event
    loop keeps running. `JsonTooLong` past `limit` characters."""
    if isinstance(value, JsonText):
        return value
    if not json_is_large(value):
        text = dumps(value)
        if limit is not None and len(text) > limit:
            raise JsonTooLong(limit)
        return text
    return await asyncio.to_thread(dumps_in_pieces, value, limit)


def dumps_in_pieces(value: Any, limit: int | None = None) -> str:
    """`dumps` built from short encoder calls (the GIL is let go between them)."""
    try:
        return encode_in_pieces(value, _model, limit)
    except JsonTooLong:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"value is not JSON-serialisable: {exc}") from None


async def loads_off_loop(text: str | None) -> Any:
    """`loads`, in a thread when the text is large."""
    if text is not None and len(text) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(json.loads, text)
    return loads(text)


def _model(value: Any) -> Any:
    """`json.dumps` hook: pydantic models as their JSON dump (no walk over plain values)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def encode_cursor(*parts: str) -> str:
    raw = json.dumps(list(parts), separators=_COMPACT).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The parts of a cursor made by `encode_cursor`; anything else is a 400 on `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        parts = None
    if not (
        isinstance(parts, list)
        and len(parts) == size
        and all(isinstance(p, str) and p for p in parts)
    ):
        raise InvalidRequestError("invalid cursor", param="cursor", code="invalid_cursor")
    return parts


def parse_time(value: str) -> datetime:
    """A cursor's timestamp back to a datetime."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError("invalid cursor", param="cursor", code="invalid_cursor") from None


def check_id(value: Any, param: str = "id") -> str:
    """A caller-chosen id: a non-empty string of printable characters, at most 128."""
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{param} must be a non-empty string", param=param)
    if len(value) > MAX_ID_LENGTH or not value.isprintable() or value.strip() != value:
        raise InvalidRequestError(
            f"{param} must be at most {MAX_ID_LENGTH} printable characters without "
            "surrounding spaces",
            param=param,
        )
    return value


def check_limit(limit: Any, param: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"{param} must be between 1 and {MAX_PAGE}", param=param)
    return limit


def check_str(value: Any, param: str, max_length: int) -> str | None:
    """An optional string field of bounded length."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{param} must be a string", param=param)
    if len(value) > max_length:
        raise InvalidRequestError(f"{param} is longer than {max_length} characters", param=param)
    return value
