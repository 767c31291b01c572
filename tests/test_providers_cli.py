"""`nodetool models` against the upstream stubs (CliRunner, real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodetool.cli.main import app
from nodetool.providers.registry import local_installed
from tests.stubs.ollama_stub import OllamaStub
from tests.stubs.openai_stub import OpenAIStub
from tests.support.servers import free_port


@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[OpenAIStub, OllamaStub]]:
    with OpenAIStub() as openai_stub, OllamaStub() as ollama_stub:
        yield openai_stub, ollama_stub


@pytest.fixture
def env(stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    openai_stub, ollama_stub = stubs
    return {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": None,
        "OLLAMA_HOST": ollama_stub.url,
        "NODETOOL_DEFAULT_PROVIDER": None,
        "NODETOOL_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }


def test_models_json_lists_every_provider(env) -> None:
    result = CliRunner().invoke(app, ["models", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["providers"][:2] == ["openai", "ollama"]
    assert data["default_provider"] == "local"  # unless NODETOOL_DEFAULT_PROVIDER says otherwise
    ids = {(m["provider"], m["id"]) for m in data["models"]}
    assert {("openai", "stub-model"), ("openai", "stub-model-2")} <= ids
    assert {("ollama", "llama-stub:latest"), ("ollama", "stub-model:latest")} <= ids
    assert (("local", "gemma-3-270m") in ids) == local_installed()


def test_models_table(env) -> None:
    result = CliRunner().invoke(app, ["models"], env=env)
    assert result.exit_code == 0, result.output
    for text in ("stub-model-2", "llama-stub:latest", "openai/stub-model", "ollama"):
        assert text in result.stdout


def test_unreachable_provider_is_skipped_with_a_warning(env) -> None:
    env = {**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    result = CliRunner().invoke(app, ["models"], env=env)
    assert result.exit_code == 0, result.output
    assert "llama-stub:latest" in result.stdout
    assert "could not list models of: openai" in result.stderr
    data = json.loads(CliRunner().invoke(app, ["models", "--json"], env=env).stdout)
    assert "openai" in data["providers"]
    assert all(m["provider"] != "openai" for m in data["models"])


def test_server_refuses_an_unavailable_default_provider(env) -> None:
    env = {**env, "OPENAI_BASE_URL": None, "NODETOOL_DEFAULT_PROVIDER": "openai"}
    result = CliRunner().invoke(app, ["chat-server", "--port", str(free_port())], env=env)
    assert result.exit_code == 2
    for option in ("pip install 'nodetool[local]'", "OPENAI_BASE_URL", "Ollama"):
        assert option in result.stderr
