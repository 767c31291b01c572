"""CLI start-up: median wall time of `nodetool --help` over a bare three-command Typer app.

Both run with the same interpreter, interleaved, in one run. Target: ratio <= 1.3.
Usage: python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_APP = '''
import typer

app = typer.Typer()


@app.command()
def serve(port: int = 8000) -> None:
    """Serve."""


@app.command()
def worker(port: int = 8000) -> None:
    """Worker."""


@app.command("chat-server")
def chat_server(port: int = 8000) -> None:
    """Chat server."""


app()
'''


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        ours_cmd = [sys.executable, "-m", "nodetool", "--help"]
        bare_cmd = [sys.executable, str(bare), "--help"]
        _time(ours_cmd), _time(bare_cmd)  # warm the file cache
        ours, base = [], []
        for _ in range(max(5, args.runs)):
            ours.append(_time(ours_cmd))
            base.append(_time(bare_cmd))
    m_ours, m_base = statistics.median(ours), statistics.median(base)
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, nodetool.cli.main; "
            "heavy = ('fastapi', 'uvicorn', 'openai', 'llama_cpp', 'sqlalchemy', 'httpx'); "
            "print(','.join(m for m in heavy if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"runs each:                 {len(ours)}")
    print(f"nodetool --help (median):  {m_ours * 1000:.1f} ms")
    print(f"bare Typer app (median):   {m_base * 1000:.1f} ms")
    print(f"ratio:                     {m_ours / m_base:.2f}  (target <= 1.3)")
    print(f"heavy modules imported by the CLI module: {heavy or 'none'}")


if __name__ == "__main__":
    main()
