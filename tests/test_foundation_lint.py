"""The code base stays ruff clean (lint and format) and no module grows past 600 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ["nodetool", "tests", "benchmarks", "scripts"]


def test_ruff_check() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *TREES], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff_format() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *TREES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_no_module_over_600_lines() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    big = {
        name: count
        for name in listed
        if (ROOT / name).exists()
        and (count := len((ROOT / name).read_text(encoding="utf-8").splitlines())) > 600
    }
    assert big == {}
