"""`current_time`: the current date and time in an IANA time zone (default UTC)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, WithJsonSchema

from nodetool.errors import ToolError
from nodetool.tools.base import Tool, ToolContext


def zone(name: str | None) -> ZoneInfo | dt.timezone:
    """The zone for an IANA name; empty/None is UTC; unknown names raise ToolError."""
    name = (name or "").strip()
    if not name or name.upper() in ("UTC", "Z", "GMT"):
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: malformed keys such as absolute paths or '..' components
        raise ToolError(
            f"unknown time zone: {name!r} (use an IANA name such as 'Europe/Berlin')"
        ) from None


class CurrentTimeArgs(BaseModel):
    # a plain string in the schema (simpler for small models); null is still accepted
    timezone: Annotated[str | None, WithJsonSchema({"type": "string"})] = Field(
        None,
        description="IANA time zone such as 'Europe/Berlin' or 'America/New_York'; UTC if unset.",
    )


class CurrentTimeTool(Tool):
    name = "current_time"
    description = "The current date and time in an IANA time zone (UTC by default)."
    Args = CurrentTimeArgs
    timeout = 5.0

    async def run(self, context: ToolContext, args: BaseModel) -> dict[str, Any]:
        assert isinstance(args, CurrentTimeArgs)
        tz = zone(args.timezone)
        now = dt.datetime.now(tz)
        offset = now.utcoffset() or dt.timedelta(0)
        return {
            "timezone": getattr(tz, "key", "UTC"),
            "iso": now.isoformat(timespec="seconds"),
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"),
            "weekday": now.strftime("%A"),
            "utc_offset": _offset(offset),
            "abbreviation": now.tzname(),
            "unix": int(now.timestamp()),
        }


def _offset(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"
