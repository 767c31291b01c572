"""The committed shell completions match what the CLI generates now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_completions_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bash_completion_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / "completions" / "nodetool.bash")])
    assert proc.returncode == 0


def test_bash_completion_completes_commands() -> None:
    script = (
        f"source {ROOT / 'completions' / 'nodetool.bash'}; "
        "COMP_WORDS=(nodetool ser); COMP_CWORD=1; _nodetool; echo ${COMPREPLY[@]}"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["serve"]
