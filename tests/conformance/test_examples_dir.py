"""Conformance: the engine runs every workflow of a folder of NodeTool workflow files.

`make conformance NODETOOL_EXAMPLES_DIR=DIR` runs this module (the default test run leaves it
out; see tests/conftest.py). CI points it at NodeTool's own published examples, so the engine
is held to real NodeTool files it does not ship. Each file is loaded and validated, then run
with its default inputs, its language-model nodes answered by the OpenAI-compatible stub: every
runnable node must complete, every output must get a value, every Preview must show one.
Workflows with known exact results (below) are also checked text for text.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nodetool.config import Settings
from nodetool.providers.registry import ProviderRegistry
from nodetool.types.jobs import to_wire
from nodetool.workflows.jobs import read_workflow_file
from nodetool.workflows.nodes.base import RunContext
from nodetool.workflows.runner import prepare, run_graph

module_loop = pytest.mark.asyncio(loop_scope="module")
FOLDER = Path(os.environ.get("NODETOOL_EXAMPLES_DIR", ""))
FILES = sorted(FOLDER.glob("*.json")) if FOLDER.is_dir() else []

_TAIL = (
    "\n\n**Decision Logic:**\nThis workflow demonstrates:\n- Multiple condition evaluation\n"
    "- Logical operations (OR gate)\n- Conditional branching\n- Multi-path routing\n"
    "- Result aggregation"
)
# (file name, params, output name, exact text): NodeTool's own results for its examples.
EXACT = [
    (
        "Conditional Logic Engine.json",
        {"value": 30},
        "decision_result",
        "## Conditional Logic Decision Result\n\n**Input Value:** 30\n\n**Condition Checks:**\n"
        "- Greater than 100? False\n- Less than 50? True\n- Combined (OR): True\n"
        "- Route Decision: EXTREME_VALUE\n\n**Processing Path:**\n"
        "🔵 LOW VALUE: 30 is less than 50. Standard processing applied." + _TAIL,
    ),
    (
        "Conditional Logic Engine.json",
        {"value": 75},
        "decision_result",
        "## Conditional Logic Decision Result\n\n**Input Value:** 75\n\n**Condition Checks:**\n"
        "- Greater than 100? False\n- Less than 50? False\n- Combined (OR): False\n"
        "- Route Decision: MEDIUM_VALUE\n\n**Processing Path:**\n"
        "🟡 MEDIUM VALUE: 75 is between 50 and 100. Balanced processing selected." + _TAIL,
    ),
    (
        "Conditional Logic Engine.json",
        {"value": 150},
        "decision_result",
        "## Conditional Logic Decision Result\n\n**Input Value:** 150\n\n**Condition Checks:**\n"
        "- Greater than 100? True\n- Less than 50? False\n- Combined (OR): True\n"
        "- Route Decision: EXTREME_VALUE\n\n**Processing Path:**\n"
        "🔴 HIGH VALUE: 150 is greater than 100. Priority processing engaged." + _TAIL,
    ),
]
PRESENT = [case for case in EXACT if (FOLDER / case[0]).is_file()]


@pytest.fixture(scope="module")
async def providers(openai_stub, tmp_path_factory) -> AsyncIterator[ProviderRegistry]:
    settings = Settings(
        openai_base_url=openai_stub.url,
        openai_api_key="sk-test",
        default_provider="openai",
        default_model="stub-model",
        data_dir=tmp_path_factory.mktemp("conformance"),
    )
    registry = await ProviderRegistry.create(settings)
    yield registry
    await registry.aclose()


async def run(
    workflow: dict[str, Any], params: dict[str, Any] | None, providers: ProviderRegistry
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    context = RunContext(
        emit=lambda event: events.append(to_wire(event)), job_id="j", workflow_id=workflow["id"]
    )
    context.providers = providers
    results = await run_graph(prepare(workflow["graph"], params), context)
    return results, events


def test_the_folder_holds_workflows() -> None:
    assert str(FOLDER) not in ("", "."), "set NODETOOL_EXAMPLES_DIR to a folder of workflow files"
    assert FOLDER.is_dir(), f"NODETOOL_EXAMPLES_DIR={FOLDER} is not a folder"
    assert FILES, f"no *.json workflow files in {FOLDER}"


@module_loop
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_every_workflow_runs_to_completion(path: Path, providers, openai_stub) -> None:
    workflow = read_workflow_file(path)  # loads, normalises and validates (node types, edges)
    prepared = prepare(workflow["graph"], None)
    openai_stub.reset()
    results, events = await run(workflow, None, providers)
    completed = {e["node_id"] for e in events if e.get("status") == "completed"}
    runnable = {
        node_id for node_id, cls in prepared.classes.items() if cls.runnable and cls.role != "input"
    }
    assert runnable <= completed, f"{path.name}: never completed: {sorted(runnable - completed)}"
    roles = {spec.id: (spec, prepared.classes[spec.id]) for spec in prepared.graph.nodes}
    outputs = {spec.name for spec, cls in roles.values() if cls.role == "output"}
    assert outputs == set(results), f"{path.name}: outputs {sorted(outputs)}, got {sorted(results)}"
    assert all(value not in (None, "") for value in results.values()), results
    previews = {s.id for s, cls in roles.values() if cls.type_name.endswith("base_node.Preview")}
    shown = {e["node_id"] for e in events if e["type"] == "output_update"}
    assert previews <= shown, f"{path.name}: previews never shown"
    model_nodes = [n for n, cls in prepared.classes.items() if cls.uses_models]
    assert len(openai_stub.requests) == len(model_nodes)


@module_loop
async def test_exact_results_of_the_known_workflows_in_the_folder(providers) -> None:
    for name, params, output, text in PRESENT:
        workflow = read_workflow_file(FOLDER / name)
        results, _ = await run(workflow, params, providers)
        assert results[output] == text, f"{name} with {params}"
