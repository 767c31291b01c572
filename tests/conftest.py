"""Shared fixtures: an isolated home for every test session and one OpenAI-compatible stub."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="nodetool-tests-"))
# Isolate every test run from the developer's real config, data and provider credentials.
os.environ["NODETOOL_DATA_DIR"] = str(_SESSION_HOME / "data")
os.environ["NODETOOL_CONFIG_DIR"] = str(_SESSION_HOME / "config")
os.environ["XDG_DATA_HOME"] = str(_SESSION_HOME / "xdg-data")
os.environ["XDG_CONFIG_HOME"] = str(_SESSION_HOME / "xdg-config")
for _name in (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OLLAMA_HOST",
    "AUTH_PROVIDER",
    "WORKER_AUTH_TOKEN",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "NODETOOL_DATABASE_URL",
    "NODETOOL_DEFAULT_PROVIDER",
    "NODETOOL_DEFAULT_MODEL",
    "NODETOOL_API_KEY",
):
    os.environ.pop(_name, None)


# The conformance suite runs only when pointed at a folder (`make conformance
# NODETOOL_EXAMPLES_DIR=DIR`); the default run does not collect it.
collect_ignore = [] if os.environ.get("NODETOOL_EXAMPLES_DIR") else ["conformance"]


@pytest.fixture(scope="session")
def openai_stub() -> Iterator:
    """One OpenAI-compatible upstream stub for the whole session (see tests/stubs/openai_stub.py).

    Tests that script replies must call `openai_stub.reset()` first or use directives.
    """
    from tests.stubs.openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        yield stub


@pytest.fixture()
def session_home() -> Path:
    return _SESSION_HOME
