"""Job event benchmark: what typed job events cost on the hot path of a streaming job.

    .venv/bin/python benchmarks/job_events.py [--events 200000] [--rounds 5]

Per event, side by side in one run, the work from the node's `emit` to the follower's yield:
  (a) untyped, as before `types/jobs.py`: the runner builds the wire dict, the event log
      copies it with its `seq`, the follower copies it without `seq`;
  (b) typed, as now: the runner builds an `OutputUpdate`, the event log makes its wire dict
      (`to_wire`) and numbers it, the follower turns it back (`from_wire`), and an edge makes
      the wire dict it sends (`to_wire`).
Prints the nanoseconds per event of each and their ratio (best of the rounds).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from nodetool.types.jobs import OutputUpdate, from_wire, to_wire


def untyped(count: int) -> float:
    started = time.perf_counter()
    for seq in range(1, count + 1):
        data: dict[str, Any] = {"node_id": "agent", "output_name": "chunk", "value": "tok"}
        event = {"type": "output_update", "job_id": "j", "workflow_id": "w", **data}
        numbered = {**event, "seq": seq}
        sent = {k: v for k, v in numbered.items() if k != "seq"}
        assert sent["type"] == "output_update"
    return (time.perf_counter() - started) / count * 1e9


def typed(count: int) -> float:
    started = time.perf_counter()
    for seq in range(1, count + 1):
        event = OutputUpdate("j", "w", "agent", "chunk", "tok")
        numbered = to_wire(event)
        numbered["seq"] = seq
        followed = from_wire(numbered)
        sent = to_wire(followed)
        assert sent["type"] == "output_update"
    return (time.perf_counter() - started) / count * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    old = min(untyped(args.events) for _ in range(args.rounds))
    new = min(typed(args.events) for _ in range(args.rounds))
    print(f"untyped dicts (before): {old:8.0f} ns/event")
    print(f"typed events (now):     {new:8.0f} ns/event")
    print(f"ratio typed/untyped:    {new / old:8.2f}x")


if __name__ == "__main__":
    main()
