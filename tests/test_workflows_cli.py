"""`nodetool run FILE.json --param name=value [--json]` through the real Typer app (CliRunner);
LLM nodes go to the OpenAI-compatible stub through the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodetool.cli.main import app
from tests.support.workflows import EXAMPLES

ENGINE = str(EXAMPLES / "Shipping Quote.json")
HEAVY = (
    "## Shipping quote\n\nWeight: 30 kg\nOver 20 kg? True\nUnder 2 kg? False\n"
    "Handling: special handling\n\nFreight: 30 kg travels on a pallet, delivery in 3-5 days."
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
    result = runner.invoke(app, ["run", ENGINE, "--param", "weight=30"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"quote:\n{HEAVY}\n\n"
    assert "completed" in result.stderr and "IntegerInput" in result.stderr


def test_run_json(runner) -> None:
    result = runner.invoke(app, ["run", ENGINE, "--param", "weight=30", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"quote": HEAVY}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--param", "weight=abc"],
            "error: Shipping Quote.json: param 'weight': expected an integer, got 'abc'",
        ),
        (
            ["--param", "size=3"],
            "error: Shipping Quote.json: unknown param 'size'; this workflow's inputs are: weight",
        ),
        (
            ["--param", "weight"],
            "error: Shipping Quote.json: bad --param 'weight': expected name=value",
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
        {"source": "input_weight", "sourceHandle": "output", "target": "99", "targetHandle": "a"}
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
    path = str(EXAMPLES / "Meeting Brief.json")
    result = runner.invoke(
        app, ["run", path, "--param", "notes=Tiny notes", "--json"], env=stub_env
    )
    assert result.exit_code == 0, result.output
    brief = json.loads(result.stdout)["brief"]
    assert "Echo: List the action items in these meeting notes" in brief
    assert "Notes:\nTiny notes" in brief
    assert len(openai_stub.requests) == 2


def test_previews_are_shown_when_a_workflow_has_no_outputs(runner, stub_env, openai_stub) -> None:
    from tests.stubs.openai_stub import Reply

    openai_stub.reset()
    openai_stub.enqueue(Reply(text="1. Scarf\n2. Boots\n"))
    path = str(EXAMPLES / "Packing List.json")
    result = runner.invoke(app, ["run", path, "--param", "Destination=Oslo"], env=stub_env)
    assert result.exit_code == 0, result.output
    assert 'Packing List:\n[\n  "Scarf",\n  "Boots"\n]' in result.stdout
    assert "Destination: Oslo" in result.stdout
