"""The Node.js test client folder: its npm packages, installed once, and a node/npm check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.needs import NODE, missing

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def require_node() -> None:
    """Skip (fail under CI=true) unless `node` and `npm` are on PATH."""
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if absent:
        missing(f"{' and '.join(absent)} not found on PATH", NODE)


def npm_install() -> None:
    """`npm install` once; node_modules is kept (gitignored) for later runs."""
    modules = NODE_DIR / "node_modules"
    if (modules / "ws").is_dir() and (modules / "@msgpack" / "msgpack").is_dir():
        return
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"npm install failed:\n{result.stdout}\n{result.stderr}"
