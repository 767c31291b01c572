"""The gateway benchmark's results: one measurement (`Result`), rounds pooled into one row,
and the report with its ratios and target checks (see benchmarks/gateway.py)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from httpx_gateway import transport_checks  # benchmarks/ sibling module


@dataclass
class Result:
    requests: int
    errors: int
    elapsed: float
    latencies: list[float]
    cpu: float = 0.0  # CPU seconds the target process used during the run
    stub_cpu: float = 0.0  # ... the upstream stub (for `direct`, the same as `cpu`)
    load_cpu: float = 0.0  # ... this process, the load generator

    @property
    def cpu_ms(self) -> float:
        """Target process CPU per request (robust to other load on the machine)."""
        return self.per_request(self.cpu)

    def per_request(self, seconds: float) -> float:
        """CPU ms per request of `seconds` (e.g. `stub_cpu`)."""
        return seconds / self.requests * 1000 if self.requests else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def pooled(runs: list[Result]) -> Result:
    """One row from interleaved rounds: their requests, time, latencies and CPU together."""
    return Result(
        sum(r.requests for r in runs),
        sum(r.errors for r in runs),
        sum(r.elapsed for r in runs),
        [latency for r in runs for latency in r.latencies],
        sum(r.cpu for r in runs),
        sum(r.stub_cpu for r in runs),
        sum(r.load_cpu for r in runs),
    )


def stream_budget(direct: Result, ours: Result) -> str:
    """What the stub and the load generator leave of the machine for a gateway at 0.9x the
    stub's stream throughput (c=32): all three processes share the CPUs, and one process
    can use at most one."""
    goal = 0.9 * direct.rps
    stub, load = ours.per_request(ours.stub_cpu), ours.per_request(ours.load_cpu)
    room = min(1.0, (os.cpu_count() or 1) - goal * (stub + load) / 1000) / goal * 1000
    return (
        f"stream c=32 CPU per stream: gateway {ours.cpu_ms:.3f} ms, stub {stub:.3f} ms "
        f"behind it ({direct.cpu_ms:.3f} ms direct), load generator {load:.3f} ms "
        f"({direct.per_request(direct.load_cpu):.3f} ms direct); at 0.9x the stub's "
        f"{direct.rps:.0f} streams/s a gateway may use at most {room:.3f} ms per stream"
    )


def report(
    results: dict[tuple[str, bool, int], Result],
    names: list[str],
    notes: list[str],
    duration: float,
    chunks: int,
) -> None:
    print()
    print(f"gateway benchmark: {chunks}-chunk stream and non-stream answer, {duration:g} s each")
    print("(cpu ms/req: CPU time of the target process per request; for `direct`, the stub's)")
    head = ("workload", "target", "req/s", "p50 ms", "p99 ms", "cpu ms/req", "errors")
    print("{:18s} {:12s} {:>9s} {:>8s} {:>8s} {:>10s} {:>6s}".format(*head))
    for stream in (False, True):
        for concurrency in (1, 32):
            label = f"{'stream' if stream else 'non-stream'} c={concurrency}"
            for name in names:
                r = results[(name, stream, concurrency)]
                print(
                    f"{label:18s} {name:12s} {r.rps:9.1f} {r.pct(0.5):8.2f} "
                    f"{r.pct(0.99):8.2f} {r.cpu_ms:10.2f} {r.errors:6d}"
                )
    print()
    checks = []
    for stream, limit in ((False, 0.3), (True, 0.3)):
        kind = "stream" if stream else "non-stream"
        direct = results[("direct", stream, 1)].pct(0.5)
        added = {name: results[(name, stream, 1)].pct(0.5) - direct for name in names[1:]}
        over = added["responses"] - added["nodetool"]
        print(
            f"added p50 latency at c=1, {kind}: "
            + ", ".join(f"{name} {value:.2f} ms" for name, value in added.items())
        )
        checks.append(
            (
                f"added p50 latency at c=1, {kind}: {added['nodetool']:.2f} ms "
                f"(target <= {limit:g} ms)",
                added["nodetool"] <= limit,
            )
        )
        checks.append(
            (
                f"/v1/responses vs chat completions, added p50 at c=1, {kind}: "
                f"{over:+.2f} ms (target <= 0.2 ms)",
                over <= 0.2,
            )
        )
    for concurrency in (1, 32):
        cpu = results[("nodetool", False, concurrency)].cpu_ms
        checks.append(
            (
                f"gateway CPU per non-stream request at c={concurrency}: {cpu:.3f} ms "
                "(target <= 0.25 ms)",
                cpu <= 0.25,
            )
        )
    rps = results[("nodetool", False, 32)].rps
    checks.append((f"non-stream c=32 throughput: {rps:.0f} req/s (target >= 3000)", rps >= 3000))
    ratio = results[("nodetool", True, 32)].rps / results[("direct", True, 32)].rps
    checks.append(
        (f"stream c=32 throughput: {ratio:.2f}x the stub's (target >= 0.9x)", ratio >= 0.9)
    )
    print(stream_budget(results["direct", True, 32], results["nodetool", True, 32]))
    for stream in (False, True):
        for concurrency in (1, 32):
            kind = f"{'stream' if stream else 'non-stream'} c={concurrency}"
            ours = results[("nodetool", stream, concurrency)]
            direct = results[("direct", stream, concurrency)]
            line = f"throughput {kind}: nodetool/direct {ours.rps / direct.rps:.2f}"
            if "base" in names:
                base = results[("base", stream, concurrency)]
                line += f", nodetool/base {ours.rps / base.rps:.2f}"
            if "other-py" in names:
                other = results[("other-py", stream, concurrency)]
                line += (
                    f", nodetool/other-py {ours.rps / other.rps:.2f} "
                    f"(cpu per request: {ours.cpu_ms / other.cpu_ms:.2f}x)"
                )
            if "litellm" in names:
                lite = results[("litellm", stream, concurrency)]
                ratio = ours.rps / lite.rps if lite.rps else float("inf")
                line += (
                    f", nodetool/litellm {ratio:.1f}x "
                    f"(cpu per request: litellm/nodetool {lite.cpu_ms / ours.cpu_ms:.1f}x)"
                )
                checks.append(
                    (f"throughput {kind}: {ratio:.1f}x LiteLLM (target >= 10x)", ratio >= 10)
                )
            print(line)
    if "httpx" in names:
        checks += transport_checks(results)
    print()
    for text, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")
    for note in notes:
        print(f"note: {note}")
    print(
        f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]} "
        f"({os.path.realpath(sys.executable)}); the stub, the "
        "gateway and the load generator share them"
    )
