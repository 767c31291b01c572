"""`nodetool doctor`: the real checks through the CLI; a crashing build reported, not suffered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.local_model import needs_model, shared_data_dir


def doctor(env: dict[str, str]) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "nodetool", "doctor", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.returncode, json.loads(proc.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@needs_model
@pytest.mark.local_model
def test_healthy_machine(tmp_path_factory: pytest.TempPathFactory) -> None:
    code, report = doctor({"NODETOOL_DATA_DIR": str(shared_data_dir(tmp_path_factory))})
    checks = by_name(report)
    assert code == 0 and report["ok"], json.dumps(report, indent=1)
    for name in ("python", "cpu", "llama.cpp build", "model file", "one-token generation"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "skip"
    # the suite runs in a virtualenv: the row names the interpreter it was made from
    assert sys.prefix != sys.base_prefix
    assert f"(a virtualenv of {os.path.realpath(sys.executable)})" in checks["python"]["detail"]


def test_a_build_that_dies_of_sigill_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\nkill -ILL $$\n")
    fake.chmod(0o755)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    env = {
        "NODETOOL_DATA_DIR": str(tmp_path / "data"),
        "NODETOOL_LLAMA_SERVER": str(fake),
        "NODETOOL_LOCAL_MODEL_PATH": str(model),
        "NODETOOL_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
    }
    code, report = doctor(env)
    checks = by_name(report)
    assert code == 1 and not report["ok"]
    generation = checks["one-token generation"]
    assert generation["status"] == "fail"
    assert "SIGILL (illegal instruction)" in generation["detail"]
    assert "make clean install" in generation["detail"]
    assert checks["redis"]["status"] == "fail"
