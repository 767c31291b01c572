"""Settings for a nodetool app whose upstream is the OpenAI-compatible test stub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodetool.config import Settings


def stub_settings(stub_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Provider `openai` at `stub_url` with model `stub-model`, auth off, files under data_dir."""
    values: dict[str, Any] = {
        "openai_base_url": stub_url,
        "openai_api_key": "sk-test",
        "default_provider": "openai",
        "default_model": "stub-model",
        "data_dir": data_dir,
        "config_dir": data_dir / "config",
        "auth_provider": "none",
    }
    values.update(overrides)
    return Settings(**values)
