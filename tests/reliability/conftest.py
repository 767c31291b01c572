"""Reliability suite fixtures: the run size and the shared figures report.

`NODETOOL_RELIABILITY_FULL=1` (what `make reliability` sets) runs every part at full size; the
default is a reduced size that the ordinary `make test` / CI run affords (a few minutes).
The figures every part measures are printed at the end of the run and written to
`reliability-report.json` in the data dir (`NODETOOL_DATA_DIR`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

FULL_ENV = "NODETOOL_RELIABILITY_FULL"
REPORT_NAME = "reliability-report.json"
_REPORT_KEY = pytest.StashKey["Report"]()


@dataclass(frozen=True)
class Sizes:
    """How hard each part pushes; `full` is the issue's size, the default is CI's."""

    full: bool
    schema_examples: int  # generated requests per operation and generation mode
    ws_frames: int  # fuzzed frames per endpoint and encoding
    fault_rounds: int  # repetitions of every injected upstream fault
    load_clients: int  # concurrent streaming clients against `nodetool chat-server`
    load_seconds: float
    idle_sockets: int  # idle /chat sockets held by one `nodetool serve`

    @classmethod
    def from_env(cls) -> Sizes:
        if os.environ.get(FULL_ENV, "").strip() in ("1", "true", "yes"):
            return cls(True, 150, 2500, 5, 200, 30.0, 1000)
        return cls(False, 15, 150, 1, 50, 5.0, 200)


class Report:
    """Figures per part (`section`), totals across parts, written as JSON after every update."""

    TOTALS = ("requests_sent", "frames_fuzzed", "faults_injected", "errors_seen")

    def __init__(self, path: Path, sizes: Sizes) -> None:
        self.path = path
        self.sizes = sizes
        self.sections: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, section: str, **figures: Any) -> None:
        """Add figures to a section: numbers accumulate, anything else is replaced."""
        with self._lock:
            target = self.sections.setdefault(section, {})
            for key, value in figures.items():
                old = target.get(key)
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                if numeric and isinstance(old, int | float) and not isinstance(old, bool):
                    target[key] = old + value
                else:
                    target[key] = value
            self._write()

    def totals(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: 0 for name in self.TOTALS}
        for figures in self.sections.values():
            for name in self.TOTALS:
                out[name] += figures.get(name, 0)
        idle = self.sections.get("idle_sockets", {})
        if "memory_per_connection_bytes" in idle:
            out["memory_per_connection_bytes"] = idle["memory_per_connection_bytes"]
        return out

    def data(self) -> dict[str, Any]:
        return {"sizes": asdict(self.sizes), "totals": self.totals(), "parts": self.sections}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data(), indent=2, sort_keys=True) + "\n")

    def lines(self) -> list[str]:
        size = "full" if self.sizes.full else f"reduced (set {FULL_ENV}=1 for full)"
        out = [f"size: {size}"]
        for name, value in self.totals().items():
            out.append(f"  {name:<30} {_fmt(value)}")
        for section, figures in self.sections.items():
            out.append(f"{section}:")
            out.extend(f"  {key:<30} {_fmt(value)}" for key, value in figures.items())
        out.append(f"report written to {self.path}")
        return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return Sizes.from_env()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest, sizes: Sizes) -> Iterator[Report]:
    data_dir = Path(os.environ.get("NODETOOL_DATA_DIR", "."))
    rep = Report(data_dir / REPORT_NAME, sizes)
    request.config.stash[_REPORT_KEY] = rep
    yield rep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rep = config.stash.get(_REPORT_KEY, None)
    if rep is None or not rep.sections:
        return
    terminalreporter.section("nodetool reliability figures")
    for line in rep.lines():
        terminalreporter.write_line(line)
