"""NodeTool graph JSON: the model, workflow normalisation, and validation before any run.

A workflow is `{id, name, description, graph: {nodes: [{id, type, data, dynamic_properties?}],
edges: [{source, sourceHandle, target, targetHandle}]}}` (docs/protocol.md §6). Validation
rejects, with one clear `WorkflowError`, everything that would make a run fail for structural
reasons: an unknown node type, a dangling edge, an unknown handle, a cycle, a missing required
input, a graph over the size limits. Validation is linear in the size of the graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetool.errors import WorkflowError
from nodetool.workflows.limits import WorkflowLimits, check_graph_size

if TYPE_CHECKING:
    from nodetool.workflows.nodes.base import BaseNode

SYNC_MODES = ("on_any", "zip_all")


@dataclass(slots=True)
class NodeSpec:
    """One node as written in the graph JSON."""

    id: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    dynamic_properties: dict[str, Any] = field(default_factory=dict)
    sync_mode: str = "on_any"

    @property
    def name(self) -> str:
        """The node's `data.name` (inputs, outputs, previews), else its id."""
        value = self.data.get("name")
        return str(value) if value not in (None, "") else self.id


@dataclass(slots=True)
class EdgeSpec:
    """One edge: `source.sourceHandle -> target.targetHandle`."""

    source: str
    source_handle: str
    target: str
    target_handle: str
    id: str = ""

    def label(self) -> str:
        return f"{self.source}.{self.source_handle} -> {self.target}.{self.target_handle}"


@dataclass(slots=True)
class Graph:
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    _index: dict[str, NodeSpec] = field(default_factory=dict, repr=False, compare=False)
    _indexed: int = field(default=-1, repr=False, compare=False)  # len(nodes) when indexed

    @classmethod
    def from_dict(cls, raw: Any, limits: WorkflowLimits | None = None) -> Graph:
        """Parse the `graph` object; a malformed shape raises `WorkflowError` naming the part.

        With `limits`, a graph over the node, edge or byte limits is refused first.
        """
        if not isinstance(raw, dict):
            raise WorkflowError("graph must be an object with `nodes` and `edges`", param="graph")
        if limits is not None:
            check_graph_size(raw, limits)
        nodes_raw = raw.get("nodes", [])
        edges_raw = raw.get("edges", [])
        if not isinstance(nodes_raw, list):
            raise WorkflowError("graph.nodes must be a list", param="graph.nodes")
        if not isinstance(edges_raw, list):
            raise WorkflowError("graph.edges must be a list", param="graph.edges")
        nodes = [_parse_node(item, i) for i, item in enumerate(nodes_raw)]
        edges = [_parse_edge(item, i) for i, item in enumerate(edges_raw)]
        return cls(nodes, edges)

    def to_dict(self) -> dict[str, Any]:
        """The graph JSON (NodeTool field names)."""
        return {
            "nodes": [
                {
                    "id": n.id,
                    "type": n.type,
                    "data": n.data,
                    "dynamic_properties": n.dynamic_properties,
                    "sync_mode": n.sync_mode,
                }
                for n in self.nodes
            ],
            "edges": [
                {
                    "id": e.id,
                    "source": e.source,
                    "sourceHandle": e.source_handle,
                    "target": e.target,
                    "targetHandle": e.target_handle,
                }
                for e in self.edges
            ],
        }

    def node(self, node_id: str) -> NodeSpec | None:
        """The node with this id (the first, with duplicates); a dict lookup."""
        if self._indexed != len(self.nodes):
            self._index.clear()
            for spec in reversed(self.nodes):
                self._index[spec.id] = spec
            self._indexed = len(self.nodes)
        return self._index.get(node_id)

    def nodes_of(self, prefix: str) -> Iterator[NodeSpec]:
        """Nodes whose type starts with `prefix` (e.g. `nodetool.input.`)."""
        return (n for n in self.nodes if n.type.startswith(prefix))


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _parse_node(item: Any, index: int) -> NodeSpec:
    where = f"graph.nodes[{index}]"
    if not isinstance(item, dict):
        raise WorkflowError(f"{where} must be an object", param=where)
    node_id, node_type = _text(item.get("id")), item.get("type")
    if node_id is None:
        raise WorkflowError(f"{where} has no id", param=where)
    if not isinstance(node_type, str) or not node_type:
        raise WorkflowError(f"node '{node_id}' has no type", param=where)
    data = item.get("data") or {}
    dynamic = item.get("dynamic_properties") or {}
    if not isinstance(data, dict):
        raise WorkflowError(f"node '{node_id}': data must be an object", param=where)
    if not isinstance(dynamic, dict):
        raise WorkflowError(f"node '{node_id}': dynamic_properties must be an object", param=where)
    sync_mode = item.get("sync_mode") or "on_any"
    if sync_mode not in SYNC_MODES:
        raise WorkflowError(
            f"node '{node_id}': unknown sync_mode {sync_mode!r} (expected on_any or zip_all)",
            param=where,
        )
    return NodeSpec(node_id, node_type, dict(data), dict(dynamic), sync_mode)


def _parse_edge(item: Any, index: int) -> EdgeSpec:
    where = f"graph.edges[{index}]"
    if not isinstance(item, dict):
        raise WorkflowError(f"{where} must be an object", param=where)
    source, target = _text(item.get("source")), _text(item.get("target"))
    if source is None or target is None:
        raise WorkflowError(f"{where} needs a source and a target node id", param=where)
    source_handle = item.get("sourceHandle") or "output"
    target_handle = item.get("targetHandle")
    if not (isinstance(source_handle, str) and isinstance(target_handle, str) and target_handle):
        raise WorkflowError(f"{where} ({source} -> {target}) needs a targetHandle", param=where)
    return EdgeSpec(source, source_handle, target, target_handle, str(item.get("id") or index))


# ---- workflows --------------------------------------------------------------------------


def slugify(name: str) -> str:
    """A stable id from a workflow name: `Conditional Logic` -> `conditional-logic`."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:128] or "workflow"


def normalize_workflow(
    raw: Any, *, slug_id: bool = True, limits: WorkflowLimits | None = None
) -> dict[str, Any]:
    """Check and normalise a NodeTool workflow object (all other fields are kept as given).

    An empty `id` becomes the slug of `name` (so loading the same file again updates the same
    workflow), or with `slug_id=False` is left out for the store to assign. The graph is
    validated (against `limits`, by default the default limits); `WorkflowError` explains the
    first problem.
    """
    if not isinstance(raw, dict):
        raise WorkflowError("a workflow must be a JSON object")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise WorkflowError("workflow name must be a string", param="name")
    raw_id = raw.get("id")
    if raw_id is not None and (not isinstance(raw_id, str | int) or isinstance(raw_id, bool)):
        raise WorkflowError("workflow id must be a string", param="id")
    workflow_id = _text(raw_id)
    if workflow_id is None and slug_id:
        if not name or not name.strip():
            raise WorkflowError("a workflow needs an id or a name", param="name")
        workflow_id = slugify(name)
    if "graph" not in raw:
        raise WorkflowError("a workflow needs a graph", param="graph")
    graph = Graph.from_dict(raw["graph"], limits or WorkflowLimits.from_settings(None))
    validate_graph(graph)
    out = dict(raw)
    out.pop("id", None)
    if workflow_id is not None:
        out["id"] = workflow_id
    out["name"] = name or workflow_id or "Untitled workflow"
    out.setdefault("description", "")
    return out


# ---- validation -------------------------------------------------------------------------


def node_classes(graph: Graph) -> dict[str, type[BaseNode]]:
    """The class of every node, by node id; unknown types and duplicate ids are errors."""
    from nodetool.workflows.registry import known_types, node_class

    classes: dict[str, type[BaseNode]] = {}
    for node in graph.nodes:
        if node.id in classes:
            raise WorkflowError(f"duplicate node id '{node.id}'", node_id=node.id)
        cls = node_class(node.type)
        if cls is None:
            hint = _closest(node.type, known_types())
            raise WorkflowError(
                f"unknown node type '{node.type}' (node '{node.id}')"
                + (f"; did you mean '{hint}'?" if hint else ""),
                node_id=node.id,
                code="unknown_node_type",
            )
        classes[node.id] = cls
    return classes


def _closest(name: str, names: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return match[0] if match else None


def validate_graph(graph: Graph) -> dict[str, type[BaseNode]]:
    """Check the whole graph before a run; returns the node classes by node id."""
    classes = node_classes(graph)
    for edge in graph.edges:
        _check_edge(edge, graph, classes)
    _check_acyclic(graph, classes)
    connected = {(e.target, e.target_handle) for e in graph.edges}
    for node in graph.nodes:
        cls = classes[node.id]
        for name in cls.required:
            if (node.id, name) in connected:
                continue
            value = node.data.get(name, node.dynamic_properties.get(name, cls.inputs.get(name)))
            if value is None or value == "":
                raise WorkflowError(
                    f"node '{node.id}' ({node.type}) is missing required input '{name}'",
                    node_id=node.id,
                    code="missing_input",
                )
    return classes


def _check_edge(edge: EdgeSpec, graph: Graph, classes: dict[str, type[BaseNode]]) -> None:
    for end in (edge.source, edge.target):
        if end not in classes:
            raise WorkflowError(
                f"edge {edge.label()} refers to node '{end}', which is not in the graph",
                code="dangling_edge",
            )
    source_cls, target_cls = classes[edge.source], classes[edge.target]
    if edge.source_handle not in source_cls.outputs:
        raise WorkflowError(
            f"edge {edge.label()}: node '{edge.source}' ({source_cls.type_name}) has no output "
            f"'{edge.source_handle}' (outputs: {', '.join(source_cls.outputs) or 'none'})",
            node_id=edge.source,
            code="unknown_handle",
        )
    target = graph.node(edge.target)
    accepts = target_cls.dynamic or edge.target_handle in target_cls.inputs
    if not accepts and target is not None:
        accepts = edge.target_handle in target.dynamic_properties
    if not accepts:
        raise WorkflowError(
            f"edge {edge.label()}: node '{edge.target}' ({target_cls.type_name}) has no input "
            f"'{edge.target_handle}' (inputs: {', '.join(target_cls.inputs) or 'none'})",
            node_id=edge.target,
            code="unknown_handle",
        )
    if edge.source == edge.target:
        raise WorkflowError(f"cycle: node '{edge.source}' feeds itself", code="cycle")


def _check_acyclic(graph: Graph, classes: dict[str, type[BaseNode]]) -> None:
    successors: dict[str, list[str]] = {node_id: [] for node_id in classes}
    for edge in graph.edges:
        successors[edge.source].append(edge.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in classes:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(successors[start]))]
        state[start] = 1
        path.append(start)
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node_id] = 2
            elif state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                raise WorkflowError(
                    "cycle: " + " -> ".join(f"'{n}'" for n in cycle),
                    node_id=child,
                    code="cycle",
                )
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(successors[child])))
