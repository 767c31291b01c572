"""The built-in node library under NodeTool's type names (importing registers every node)."""

from nodetool.workflows.nodes import (  # noqa: F401
    boolean,
    constant,
    control,
    io,
    llm,
    mathops,
    text,
)
