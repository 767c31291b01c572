"""Workflow inputs and outputs: their description and typed params (by input name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nodetool.errors import WorkflowError
from nodetool.workflows.graph import Graph, NodeSpec, node_classes

if TYPE_CHECKING:
    from nodetool.workflows.nodes.io import InputNode


def input_nodes(graph: Graph) -> list[tuple[NodeSpec, type[InputNode]]]:
    """The workflow's input nodes with their classes, in graph order (the classes describe
    each param: type, schema, coercion); unknown node types raise `WorkflowError`."""
    classes = node_classes(graph)
    return [(node, classes[node.id]) for node in graph.nodes if classes[node.id].role == "input"]  # type: ignore[misc]


def describe_inputs(graph: Graph) -> list[dict[str, Any]]:
    """The workflow's inputs: `{name, type, default, description, node_id}` in graph order."""
    return [
        {
            "name": node.name,
            "type": cls.json_type,
            "default": node.data.get("value", cls.inputs.get("value")),
            "description": node.data.get("description") or "",
            "node_id": node.id,
        }
        for node, cls in input_nodes(graph)
    ]


def chat_text_inputs(graph: Graph) -> list[str]:
    """The names of the inputs a chat user's text may feed, preferred first (message inputs,
    then string inputs)."""
    ranked = [(cls.chat_text, i, node.name) for i, (node, cls) in enumerate(input_nodes(graph))]
    return [name for rank, _, name in sorted(ranked) if rank > 0]


def output_names(graph: Graph) -> list[str]:
    classes = node_classes(graph)
    return [n.name for n in graph.nodes if classes[n.id].role == "output"]


def coerce_params(graph: Graph, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params by input name -> checked values by input node id; errors name the param."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise WorkflowError("params must be an object of input name -> value", param="params")
    classes: dict[str, type[InputNode]] = {}
    by_name: dict[str, list[str]] = {}
    for node, cls in input_nodes(graph):
        classes[node.id] = cls
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
                values[node_id] = cls.coerce(raw)
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
