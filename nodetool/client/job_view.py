"""The live progress of one workflow job, for `nodetool chat` (workflow turns) and `nodetool run`.

`JobView` is fed the job's events as wire dicts (`job_update`, `node_update`, `node_progress`,
`output_update`; docs/protocol.md §6) and renders, through rich, as a table titled with the
job's status: one row per node with its type, status and latest detail (a progress bar,
characters streamed so far, an output preview or its error).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from nodetool.client.base import short

STATUS_STYLE = {
    "pending": "dim",
    "queued": "dim",
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "error": "red",
    "cancelled": "magenta",
    "skipped": "dim",
}
STATUS_MARK = {
    "pending": "·",
    "queued": "·",
    "running": "…",
    "completed": "✓",
    "failed": "✗",
    "error": "✗",
    "cancelled": "✗",
    "skipped": "-",
}
JOB_EVENTS = ("job_update", "node_update", "node_progress", "output_update")
STREAM_OUTPUT = "chunk"  # the output name of streamed text pieces
LABEL_WIDTH = 40  # the node column (id and type) is kept whole up to this width


def _label(node_id: str, node: Mapping[str, Any]) -> Text:
    label = Text(node_id, style="bold")
    if node.get("node_type"):
        label.append(f" {str(node['node_type']).rsplit('.', 1)[-1]}", style="dim")
    return label


class JobView:
    """The state of one job and each of its nodes; `nodes` seeds rows (id, type) as pending."""

    def __init__(self, nodes: Iterable[tuple[str, str]] = ()) -> None:
        self.job: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {
            node_id: {"node_type": node_type, "status": "pending"} for node_id, node_type in nodes
        }

    def update(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "job_update":
            self.job.update({k: v for k, v in event.items() if v is not None})
            return
        if kind not in JOB_EVENTS:
            return
        node_id = str(event.get("node_id") or "?")
        node = self.nodes.setdefault(node_id, {"status": "running"})
        if kind == "node_update":
            node.update({k: event[k] for k in ("node_type", "status", "error") if event.get(k)})
        elif kind == "node_progress":
            node["progress"] = event.get("progress") or 0
            node["total"] = event.get("total") or 0
        elif event.get("output_name") == STREAM_OUTPUT:
            node["streamed"] = node.get("streamed", 0) + len(str(event.get("value") or ""))
        else:
            node["output"] = short(event.get("value"), 60)

    def _detail(self, node: Mapping[str, Any]) -> RenderableType:
        if node.get("error"):
            return Text(str(node["error"]), style="red")
        total = node.get("total") or 0
        if total:
            done = float(node.get("progress") or 0)
            return ProgressBar(total=float(total), completed=done, width=20)
        if "streamed" in node:
            return Text(f"streaming: {node['streamed']} chars")
        return Text(str(node.get("output") or ""))

    def __rich__(self) -> RenderableType:
        title = None
        if self.job:
            status = str(self.job.get("status") or "running")
            name = self.job.get("workflow_id") or ""
            title = f"workflow {name} · [{STATUS_STYLE.get(status, '')}]{status}[/]"
        labels = [_label(node_id, node) for node_id, node in self.nodes.items()]
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        width = min(max((len(label) for label in labels), default=4), LABEL_WIDTH)
        table.add_column("node", no_wrap=True, overflow="ellipsis", min_width=width)
        table.add_column("status", no_wrap=True, min_width=11)
        table.add_column("detail", no_wrap=True, overflow="ellipsis", ratio=1)
        for label, node in zip(labels, self.nodes.values(), strict=True):
            status = str(node.get("status") or "")
            mark = STATUS_MARK.get(status, "?")
            table.add_row(
                label, Text(f"{mark} {status}", STATUS_STYLE.get(status, "")), self._detail(node)
            )
        if self.job.get("error"):
            table.add_row(Text("error", style="red"), "", Text(str(self.job["error"]), style="red"))
        return table
