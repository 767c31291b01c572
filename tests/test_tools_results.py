"""json_safe: every tool result becomes JSON; bytes are stored as files or base64."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

from nodetool.config import Settings
from nodetool.tools.base import ToolContext
from nodetool.tools.results import INLINE_BYTES_LIMIT, json_safe

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: int
    blob: bytes


@dataclasses.dataclass
class Box:
    corner: Point
    tags: set[str]


def _context(tmp_path: Path) -> ToolContext:
    return ToolContext(user_id="user/../1", settings=Settings(data_dir=tmp_path))


def test_plain_values_pass_through() -> None:
    value = {"a": [1, 2.5, "x", None, True]}
    assert json_safe(value) == value


def test_containers_and_odd_types() -> None:
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ident = uuid.UUID(int=1)
    out = json_safe(
        {
            1: (1, 2),
            "set": {3, 1, 2},
            "when": when,
            "day": when.date(),
            "span": dt.timedelta(seconds=90),
            "dec": Decimal("1.10"),
            "id": ident,
            "path": Path("/a/b"),
            "enum": Color.RED,
            "nan": float("nan"),
            "inf": float("inf"),
            "err": ValueError("boom"),
            "obj": object,
        }
    )
    json.dumps(out, allow_nan=False)  # strictly JSON
    assert out["1"] == [1, 2]
    assert out["set"] == [1, 2, 3]
    assert out["when"] == "2025-01-02T03:04:05+00:00"
    assert out["day"] == "2025-01-02"
    assert out["span"] == 90.0
    assert out["dec"] == "1.10"
    assert out["id"] == str(ident)
    assert out["path"] == "/a/b"
    assert out["enum"] == "red"
    assert out["nan"] == "nan" and out["inf"] == "inf"
    assert out["err"] == "ValueError: boom"
    assert out["obj"] == str(object)


def test_models_and_dataclasses_are_dumped() -> None:
    out = json_safe(Box(corner=Point(x=1, blob=b"hi"), tags={"b", "a"}))
    assert out["tags"] == ["a", "b"]
    assert out["corner"]["x"] == 1
    assert base64.b64decode(out["corner"]["blob"]["base64"]) == b"hi"


def test_small_bytes_are_inlined_as_base64(tmp_path: Path) -> None:
    out = json_safe({"image": PNG}, _context(tmp_path))
    image = out["image"]
    assert image["type"] == "bytes" and image["content_type"] == "image/png"
    assert image["size"] == len(PNG)
    assert base64.b64decode(image["base64"]) == PNG


def test_large_bytes_are_stored_in_the_workspace(tmp_path: Path) -> None:
    context = _context(tmp_path)
    data = PNG + bytes(range(256)) * (INLINE_BYTES_LIMIT // 256 + 1)
    out = json_safe([bytearray(data)], context)[0]
    assert out["type"] == "file" and out["content_type"] == "image/png"
    assert out["size"] == len(data)
    stored = context.workspace / out["path"]
    assert stored.read_bytes() == data
    assert stored.resolve().is_relative_to(tmp_path / "workspaces")
    assert out["path"].startswith("tool-outputs/") and out["path"].endswith(".png")


def test_large_bytes_without_context_are_base64() -> None:
    data = b"\x01" * (INLINE_BYTES_LIMIT * 2)
    out = json_safe(memoryview(data))
    assert out["type"] == "bytes" and base64.b64decode(out["base64"]) == data


def test_cycles_do_not_recurse_forever() -> None:
    loop: list = []
    loop.append(loop)
    json.dumps(json_safe(loop))
