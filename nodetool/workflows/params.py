"""Workflow inputs and outputs: their description and typed params (by input name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodetool.errors import WorkflowError
from nodetool.workflows.graph import Graph, node_classes


def describe_inputs(graph: Graph) -> list[dict[str, Any]]:
    """The workflow's inputs: `{name, type, default, description, node_id}` in graph order."""
    classes = node_classes(graph)
    described = []
    for node in graph.nodes:
        cls = classes[node.id]
        if cls.role == "input":
            described.append(
                {
                    "name": node.name,
                    "type": getattr(cls, "json_type", "any"),
                    "default": node.data.get("value", cls.inputs.get("value")),
                    "description": node.data.get("description") or "",
                    "node_id": node.id,
                }
            )
    return described


def output_names(graph: Graph) -> list[str]:
    classes = node_classes(graph)
    return [n.name for n in graph.nodes if classes[n.id].role == "output"]


def coerce_params(graph: Graph, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params by input name -> checked values by input node id; errors name the param."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise WorkflowError("params must be an object of input name -> value", param="params")
    classes = node_classes(graph)
    by_name: dict[str, list[str]] = {}
    for node in graph.nodes:
        if classes[node.id].role == "input":
            by_name.setdefault(node.name, []).append(node.id)
    values: dict[str, Any] = {}
    for name, raw in params.items():
        node_ids = by_name.get(name)
        if not node_ids:
            known = ", ".join(sorted(by_name)) or "none"
            raise WorkflowError(
                f"unknown param '{name}'; this workflow's inputs are: {known}",
                param=f"params.{name}",
                code="unknown_param",
            )
        for node_id in node_ids:
            cls = classes[node_id]
            try:
                values[node_id] = cls.coerce(raw)  # type: ignore[attr-defined]
            except ValueError as exc:
                raise WorkflowError(
                    f"param '{name}': {exc}", param=f"params.{name}", code="invalid_param"
                ) from None
    return values


def parse_cli_params(pairs: list[str] | None) -> dict[str, str]:
    """`name=value` strings -> dict; a pair without `=` or with an empty name is an error."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise WorkflowError(f"bad --param {pair!r}: expected name=value")
        params[name.strip()] = value
    return params
