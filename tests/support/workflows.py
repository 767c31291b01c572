"""Workflow test helpers: the repository's example workflows and a gate node tests open at will."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nodetool.types.jobs import JobEvent, to_wire
from nodetool.workflows.nodes.base import BaseNode, NodeContext
from nodetool.workflows.registry import register

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
GATES: dict[str, threading.Event] = {}


@register
class GateNode(BaseNode):
    """Test node: passes `value` on once the test opens the gate named `gate`."""

    type_name = "tests.Gate"
    inputs = {"gate": "", "value": None}

    async def process(self, ctx: NodeContext, values: dict[str, Any]) -> Any:
        gate = GATES.setdefault(values["gate"], threading.Event())
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return values["value"]


def gate_graph(gate: str) -> dict[str, Any]:
    """text input -> gate -> `echo` output."""
    return {
        "nodes": [
            {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}},
            {"id": "g", "type": GateNode.type_name, "data": {"gate": gate}},
            {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "echo"}},
        ],
        "edges": [
            {"source": "in", "sourceHandle": "output", "target": "g", "targetHandle": "value"},
            {"source": "g", "sourceHandle": "output", "target": "out", "targetHandle": "value"},
        ],
    }


async def wire(stream: AsyncIterator[JobEvent]) -> AsyncIterator[dict[str, Any]]:
    """A job's typed events (`JobManager.subscribe`) as the wire dicts the edges send."""
    try:
        async for event in stream:
            yield to_wire(event)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
