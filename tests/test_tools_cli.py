"""`nodetool tools`: the table and --json listing of the built-in tools."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from nodetool.cli.main import app
from nodetool.cli.tools import describe_parameters

BUILTINS = ["calculator", "current_time", "read_file", "write_file", "list_directory", "http_get"]


def test_json_lists_every_builtin_with_its_schema() -> None:
    result = CliRunner().invoke(app, ["tools", "--json"])
    assert result.exit_code == 0, result.output
    specs = json.loads(result.output)
    assert [spec["name"] for spec in specs] == BUILTINS
    by_name = {spec["name"]: spec for spec in specs}
    assert by_name["calculator"]["parameters"]["required"] == ["expression"]
    assert by_name["write_file"]["parameters"]["required"] == ["path", "content"]
    assert "required" not in by_name["current_time"]["parameters"]
    assert all(spec["description"] for spec in specs)


def test_table() -> None:
    result = CliRunner().invoke(app, ["tools"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in BUILTINS:
        assert name in result.output
    assert "expression: string (required)" in result.output
    assert "timezone: string (optional)" in result.output
    assert "workflow_<tool_name>" in result.output


def test_describe_parameters() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer", "description": "count"}, "b": {}},
        "required": ["a"],
    }
    assert describe_parameters(schema) == ["a: integer (required) — count", "b: any (optional)"]
    assert describe_parameters({"type": "object", "properties": {}}) == ["(none)"]
