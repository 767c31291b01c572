"""`nodetool run FILE.json --param name=value [--json]` through the real Typer app (CliRunner);
LLM nodes go to the OpenAI-compatible stub through the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodetool.cli.main import app
from tests.support.workflows import EXAMPLES

ENGINE = str(EXAMPLES / "Conditional Logic Engine.json")
HIGH = (
    "## Conditional Logic Decision Result\n\n**Input Value:** 150\n\n**Condition Checks:**\n"
    "- Greater than 100? True\n- Less than 50? False\n- Combined (OR): True\n"
    "- Route Decision: EXTREME_VALUE\n\n**Processing Path:**\n"
    "🔴 HIGH VALUE: 150 is greater than 100. Priority processing engaged.\n\n"
    "**Decision Logic:**\nThis workflow demonstrates:\n- Multiple condition evaluation\n"
    "- Logical operations (OR gate)\n- Conditional branching\n- Multi-path routing\n"
    "- Result aggregation"
)


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def stub_env(openai_stub) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_DEFAULT_MODEL": "stub-model",
    }


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_run_prints_outputs_and_progress(runner) -> None:
    result = runner.invoke(app, ["run", ENGINE, "--param", "value=150"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"decision_result:\n{HIGH}\n\n"
    assert "completed" in result.stderr and "IntegerInput" in result.stderr


def test_run_json(runner) -> None:
    result = runner.invoke(app, ["run", ENGINE, "--param", "value=150", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"decision_result": HIGH}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--param", "value=abc"],
            "error: Conditional Logic Engine.json: param 'value': expected an integer, got 'abc'",
        ),
        (
            ["--param", "size=3"],
            "error: Conditional Logic Engine.json: unknown param 'size'; "
            "this workflow's inputs are: value",
        ),
        (
            ["--param", "value"],
            "error: Conditional Logic Engine.json: bad --param 'value': expected name=value",
        ),
    ],
)
def test_bad_params_give_one_clear_line(runner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", ENGINE, *args])
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == message
    assert result.stdout == ""


def test_bad_files(runner, tmp_path) -> None:
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "cannot read" in one_error_line(missing.stderr)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    invalid = runner.invoke(app, ["run", str(broken)])
    assert invalid.exit_code == 2 and "is not valid JSON" in one_error_line(invalid.stderr)
    workflow = json.loads(Path(ENGINE).read_text())
    workflow["graph"]["edges"].append(
        {"source": "3", "sourceHandle": "output", "target": "99", "targetHandle": "a"}
    )
    dangling = tmp_path / "dangling.json"
    dangling.write_text(json.dumps(workflow))
    result = runner.invoke(app, ["run", str(dangling)])
    assert result.exit_code == 2
    assert "refers to node '99', which is not in the graph" in one_error_line(result.stderr)


def test_node_failure_exits_non_zero(runner, tmp_path) -> None:
    path = tmp_path / "divide.json"
    path.write_text(
        json.dumps(
            {
                "name": "Divide",
                "graph": {
                    "nodes": [
                        {"id": "n", "type": "nodetool.input.FloatInput", "data": {"name": "b"}},
                        {"id": "d", "type": "nodetool.math.Divide", "data": {"a": 1}},
                        {"id": "o", "type": "nodetool.output.Output", "data": {"name": "q"}},
                    ],
                    "edges": [
                        {
                            "source": "n",
                            "sourceHandle": "output",
                            "target": "d",
                            "targetHandle": "b",
                        },
                        {
                            "source": "d",
                            "sourceHandle": "output",
                            "target": "o",
                            "targetHandle": "value",
                        },
                    ],
                },
            }
        )
    )
    ok = runner.invoke(app, ["run", str(path), "--param", "b=4", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout) == {"q": 0.25}
    failed = runner.invoke(app, ["run", str(path), "--param", "b=0"])
    assert failed.exit_code == 1
    assert "error: node 'd' (nodetool.math.Divide) failed: division by zero" in failed.stderr
    assert failed.stdout == ""


def test_agent_workflow_uses_the_configured_provider(runner, stub_env, openai_stub) -> None:
    openai_stub.reset()
    path = str(EXAMPLES / "Research Paper Summarizer.json")
    result = runner.invoke(
        app, ["run", path, "--param", "paper=Tiny paper", "--json"], env=stub_env
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["paper_summary"]
    assert "Echo: Analyze this research paper and extract:" in summary
    assert "Paper:\nTiny paper" in summary
    assert len(openai_stub.requests) == 2


def test_previews_are_shown_when_a_workflow_has_no_outputs(runner, stub_env, openai_stub) -> None:
    from tests.stubs.openai_stub import Reply

    openai_stub.reset()
    openai_stub.enqueue(Reply(text="1. Sky Pirates\n2. Wind Thief\n"))
    path = str(EXAMPLES / "Creative Story Ideas.json")
    result = runner.invoke(app, ["run", path, "--param", "Genre=Mystery"], env=stub_env)
    assert result.exit_code == 0, result.output
    assert 'Generated Story Ideas:\n[\n  "Sky Pirates",\n  "Wind Thief"\n]' in result.stdout
    assert "Genre: Mystery" in result.stdout
