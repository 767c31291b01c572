"""current_time: IANA zones, the UTC default, and refusal of unknown zones."""

from __future__ import annotations

import datetime as dt

import pytest

from nodetool.config import Settings
from nodetool.errors import ToolError
from nodetool.tools.base import ToolContext
from nodetool.tools.clock import CurrentTimeArgs, CurrentTimeTool


@pytest.fixture()
def context(tmp_path) -> ToolContext:
    return ToolContext(user_id="1", settings=Settings(data_dir=tmp_path))


async def now_in(context: ToolContext, timezone: str | None) -> dict:
    return await CurrentTimeTool().run(context, CurrentTimeArgs(timezone=timezone))


async def test_default_is_utc(context: ToolContext) -> None:
    before = int(dt.datetime.now(dt.UTC).timestamp())
    result = await now_in(context, None)
    after = int(dt.datetime.now(dt.UTC).timestamp())
    assert result["timezone"] == "UTC"
    assert result["utc_offset"] == "+00:00"
    assert before <= result["unix"] <= after
    assert dt.datetime.fromisoformat(result["iso"]).utcoffset() == dt.timedelta(0)


async def test_iana_zone(context: ToolContext) -> None:
    result = await now_in(context, "Asia/Kolkata")
    assert result["timezone"] == "Asia/Kolkata"
    assert result["utc_offset"] == "+05:30"  # no DST in India
    assert result["iso"].endswith("+05:30")
    local = dt.datetime.fromisoformat(result["iso"])
    assert local.strftime("%A") == result["weekday"]


async def test_negative_offset(context: ToolContext) -> None:
    result = await now_in(context, "America/Argentina/Buenos_Aires")
    assert result["utc_offset"] == "-03:00"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "x" * 300])
async def test_unknown_zone_is_refused(context: ToolContext, zone: str) -> None:
    with pytest.raises(ToolError) as info:
        await now_in(context, zone)
    assert "unknown time zone" in info.value.message
