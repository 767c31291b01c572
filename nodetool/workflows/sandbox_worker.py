"""The child side of the node sandbox: a process that runs `compute()` of one node at a time.

Started as `python -m nodetool.workflows.sandbox_worker FD MEMORY_MB`, FD being its end of
a socket pair with the server.

The process lowers its priority, caps its address space (`RLIMIT_AS`, so a runaway
allocation is a `MemoryError`), and before each task sets its CPU soft limit
(`RLIMIT_CPU`) to the CPU time it has used plus the task's allowance: a node that burns
past it is killed by the kernel (SIGXCPU), which the parent reports as the CPU limit.
Messages on the pipe (pickled tuples):

- parent -> child: `((module, qualname), values, limits, cpu_seconds, memory_left)`: the node
  class by where it is defined, so only the modules that are used get imported; the bytes
  left in the job's memory budget (`memory.py`)
- child -> parent: `("ready",)` once, then per task `("ok", value, cpu_used, size, held)`
  (`size`: JSON bytes, `held`: bytes in memory) or `("error", message, cpu_used)`. An output
  that would not fit in `memory_left` is an error: it is never sent.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import resource
import sys
from typing import Any

MEMORY_HINT = "NODETOOL_WORKFLOW_NODE_MEMORY_MB"


def _cpu_time() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(conn: Any, memory_mb: int) -> None:
    """Serve tasks on `conn` until the parent closes it."""
    with contextlib.suppress(OSError):
        os.nice(10)  # the server's own event loop comes first
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU must not dump a core
    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import jinja2.sandbox  # noqa: F401  (the template nodes' engine, imported while idle)

    import nodetool.workflows.limits  # noqa: F401

    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        reply = _run(task, memory_mb)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("error", f"the node's output does not fit in {memory_mb} MiB", reply[2]))
        except (TypeError, ValueError, AttributeError) as exc:  # unpicklable value
            conn.send(("error", f"the node's output cannot be passed on: {exc}", reply[2]))


def _node_class(where: tuple[str, str]) -> Any:
    module, qualname = where
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _run(task: tuple[Any, dict[str, Any], Any, float, int], memory_mb: int) -> tuple[Any, ...]:
    from nodetool.workflows.graph import NodeSpec
    from nodetool.workflows.limits import encoded_size
    from nodetool.workflows.memory import over_budget, value_size

    where, values, limits, cpu_seconds, memory_left = task
    start = _cpu_time()
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(start + cpu_seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    try:
        cls = _node_class(where)
        value = cls(NodeSpec(id="", type=cls.type_name)).compute(values, limits)
        size = encoded_size(value, limits.node_output_bytes)
        held = value_size(value, memory_left)
        if held > memory_left:
            raise over_budget(limits.job_memory_mb)
        return ("ok", value, _cpu_time() - start, size, held)
    except MemoryError:
        value = None
        message = f"the node ran out of memory (limit {memory_mb} MiB, {MEMORY_HINT})"
        return ("error", message, _cpu_time() - start)
    except RecursionError:
        return ("error", "the node recursed too deeply", _cpu_time() - start)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return ("error", message, _cpu_time() - start)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])), int(sys.argv[2]))
