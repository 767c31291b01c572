"""The built-in tools, all usable offline (http_get needs a network only for its target)."""

from __future__ import annotations

from nodetool.tools.base import Tool


def builtin_tools() -> list[Tool]:
    """One instance of every built-in tool, in listing order."""
    from nodetool.tools.calculator import CalculatorTool
    from nodetool.tools.clock import CurrentTimeTool
    from nodetool.tools.files import ListDirectoryTool, ReadFileTool, WriteFileTool
    from nodetool.tools.http_get import HttpGetTool

    return [
        CalculatorTool(),
        CurrentTimeTool(),
        ReadFileTool(),
        WriteFileTool(),
        ListDirectoryTool(),
        HttpGetTool(),
    ]
