"""A workflow tool's arguments come from its input node classes: the JSON schema from
`InputNode.param_schema`, the values from `InputNode.coerce` and the schema's bounds; the same
classes tell a `/chat` workflow turn where the user's text goes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nodetool.chat.session import feed_text
from nodetool.config import Settings
from nodetool.errors import ToolError
from nodetool.tools.base import ToolContext
from nodetool.workflows.as_tool import WorkflowTool, any_tool_name, args_model
from nodetool.workflows.graph import Graph
from nodetool.workflows.params import chat_text_inputs, describe_inputs


def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": f"nodetool.input.{kind}", "data": data}


WORKFLOW: dict[str, Any] = {
    "id": "mixed",
    "name": "Mixed",
    "tool_name": "mixed",
    "graph": {
        "nodes": [
            node("ratio", "FloatInput", name="ratio", value=0.5, min=0, max=1),
            node("loud", "BooleanInput", name="loud", value=False),
            node("note", "TextInput", name="note", value="", label="A note"),
            node("ask", "ChatInput", name="ask"),
            node("anon", "IntegerInput", value=3),  # no data.name: keyed by its id
            node("dup", "StringInput", name="note", value="second"),  # same name: one arg
        ],
        "edges": [],
    },
}


def test_the_schema_comes_from_the_node_classes() -> None:
    schema = WorkflowTool(WORKFLOW, None).parameters()
    assert schema["properties"] == {
        "ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "loud": {"type": "boolean", "default": False},
        "note": {"type": "string", "description": "A note"},
        "ask": {"type": "string"},  # a message input takes the message's text
        "anon": {"type": "integer", "default": 3},
    }
    assert schema["required"] == ["note", "ask"]  # no default: empty text, empty message
    assert schema["additionalProperties"] is False
    # the worker's listing describes the same inputs by the same classes
    described = {i["name"]: i["type"] for i in describe_inputs(Graph.from_dict(WORKFLOW["graph"]))}
    assert described == {
        "ratio": "number",
        "loud": "boolean",
        "note": "string",
        "ask": "object",
        "anon": "integer",
    }


def test_arguments_are_coerced_by_the_node_classes() -> None:
    model = args_model(WORKFLOW)
    args = model.model_validate({"ratio": "0.25", "loud": "yes", "note": 7, "ask": "hi"})
    assert args.model_dump(by_alias=True, exclude_unset=True) == {
        "ratio": 0.25,
        "loud": True,
        "note": "7",
        "ask": {"type": "message", "role": "user", "content": "hi"},
    }
    for bad, reason in (
        ({"ratio": 2}, "must be at most 1"),
        ({"ratio": -1}, "must be at least 0"),
        ({"loud": "maybe"}, "expected true or false"),
        ({"anon": 1.5}, "expected an integer"),
    ):
        with pytest.raises(ValidationError) as info:
            model.model_validate({"note": "n", "ask": "a", **bad})
        assert reason in str(info.value)


@pytest.mark.asyncio
async def test_a_workflow_whose_graph_is_invalid_is_a_tool_that_says_so(tmp_path) -> None:
    broken = {**WORKFLOW, "graph": {"nodes": [node("x", "EnumInput", name="pick")], "edges": []}}
    tool = WorkflowTool(broken, None, any_tool_name(broken))
    assert tool.parameters()["properties"] == {}
    context = ToolContext(user_id="u", settings=Settings(data_dir=tmp_path))
    with pytest.raises(ToolError) as info:
        await WorkflowTool(broken, object(), "workflow_x").run(  # type: ignore[arg-type]
            context, tool.Args.model_validate({})
        )
    assert "unknown node type 'nodetool.input.EnumInput'" in info.value.message


def test_chat_text_goes_to_message_inputs_first_then_string_inputs() -> None:
    graph = Graph.from_dict(WORKFLOW["graph"])
    assert chat_text_inputs(graph) == ["ask", "note", "note"]
    assert feed_text(WORKFLOW["graph"], None, "hello") == {"ask": "hello"}
    assert feed_text(WORKFLOW["graph"], {"ask": "x"}, "hello") == {"ask": "x", "note": "hello"}
    unknown = {"nodes": [{"id": "n", "type": "nope.Node"}], "edges": []}
    assert feed_text(unknown, {"a": 1}, "hello") == {"a": 1}  # starting the job will say why


def test_the_tools_layer_imports_neither_workflows_nor_api() -> None:
    """Workflows own workflow-as-tool: `tools/` gets the family handed in, never imports it."""
    import ast
    from pathlib import Path

    import nodetool.tools

    upward = ("nodetool.workflows", "nodetool.api", "nodetool.chat", "nodetool.cli")
    found = []
    for path in sorted(Path(nodetool.tools.__file__).parent.glob("*.py")):
        for item in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in item.names]
                if isinstance(item, ast.Import)
                else [item.module or ""]
                if isinstance(item, ast.ImportFrom)
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.startswith(upward)]
    assert found == []
