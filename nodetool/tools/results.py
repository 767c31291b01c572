"""Make any tool result JSON-safe before it reaches the model, the wire or the store.

Bytes never get dropped: small payloads become base64 inline, larger ones are written to the
user's workspace (`tool-outputs/`) and referenced by their workspace-relative path.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from nodetool.tools.base import ToolContext

INLINE_BYTES_LIMIT = 16 * 1024  # bytes up to this size are inlined as base64
OUTPUT_DIR = "tool-outputs"
MAX_DEPTH = 64

_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"PK\x03\x04", "application/zip", ".zip"),
    (b"OggS", "audio/ogg", ".ogg"),
    (b"ID3", "audio/mpeg", ".mp3"),
    (b"fLaC", "audio/flac", ".flac"),
)


def sniff(data: bytes) -> tuple[str, str]:
    """(content type, file extension) guessed from the leading bytes."""
    for magic, content_type, ext in _SIGNATURES:
        if data.startswith(magic):
            return content_type, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav", ".wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return "application/octet-stream", ".bin"


def json_safe(value: Any, context: ToolContext | None = None, _depth: int = 0) -> Any:
    """A JSON-serializable copy of `value`.

    dict keys become strings; tuples, sets and generators-like containers become lists;
    pydantic models and dataclasses are dumped; datetimes become ISO strings; non-finite floats
    become strings; bytes become `{"type": "bytes", ...}` (base64) or `{"type": "file", ...}`
    (stored in the workspace when a context is given and the payload is large).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DEPTH:
        return "…"
    depth = _depth + 1
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value), context)
    if isinstance(value, Mapping):
        return {_key(k): json_safe(v, context, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, context, depth) for v in value]
    if isinstance(value, set | frozenset):
        items = [json_safe(v, context, depth) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, BaseModel):
        return json_safe(value.model_dump(), context, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return json_safe(fields, context, depth)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, context, depth)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        try:
            listed = tolist()
        except Exception:
            listed = None
        if listed is not None:
            return json_safe(listed, context, depth)
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return str(key.value)
    return str(key)


def _bytes(data: bytes, context: ToolContext | None) -> dict[str, Any]:
    content_type, ext = sniff(data)
    if context is None or len(data) <= INLINE_BYTES_LIMIT:
        return {
            "type": "bytes",
            "content_type": content_type,
            "size": len(data),
            "base64": base64.b64encode(data).decode("ascii"),
        }
    name = f"{uuid.uuid4().hex}{ext}"
    directory = context.workspace / OUTPUT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return {
        "type": "file",
        "content_type": content_type,
        "size": len(data),
        "path": f"{OUTPUT_DIR}/{name}",
    }
