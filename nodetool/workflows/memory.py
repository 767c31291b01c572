"""The per-job memory budget: every value a job's nodes produce is charged as it is produced.

`value_size` estimates what a value takes in memory: `sys.getsizeof` of every object in it,
each reference counted in full (a list holding one 10 MiB string a thousand times counts
10 GiB: that is what storing or sending it as JSON would build). A value emitted again (a
node passing its input on) is charged again, so the total bounds what a job can hold at any
moment, however it shares references, plus a fixed amount for each event it logs.

`JobMemory` keeps one job's account. Going over `job_memory_mb` raises `LimitExceeded`
naming `NODETOOL_WORKFLOW_JOB_MEMORY_MB`. The sandbox worker measures a process node's
output before sending it and refuses one that would not fit in what is left, so an
over-budget value never reaches the server. Large values sent to the account are measured
in the sandbox's thread pool, so the event loop never walks a big structure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from nodetool.workflows.limits import LimitExceeded

EVENT_BYTES = 512  # charged per job event (the dict and its strings, while it waits to be stored)
INLINE_STEPS = 1024  # objects measured on the event loop before the rest goes to a thread
_CONTAINERS = (list, tuple, dict, set, frozenset)
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
MIB = 1024 * 1024


def value_size(value: Any, limit: int, known: dict[int, Any] | None = None) -> int:
    """Bytes `value` takes, references counted in full; stops once past `limit` (returning
    what it counted so far, which is then over it). `known` maps `id(container)` to
    `(container, size)` for containers measured before."""
    return _measure(value, limit, known, None) or 0


def _measure(
    value: Any, limit: int, known: dict[int, Any] | None, max_steps: int | None
) -> int | None:
    """`value_size`, or None when it would take more than `max_steps` objects."""
    total, stack, steps = 0, [value], 0
    while stack:
        item = stack.pop()
        steps += 1
        if max_steps is not None and steps > max_steps:
            return None
        hit = known.get(id(item)) if known is not None else None
        remembered = hit is not None and hit[0] is item
        total += hit[1] if remembered else sys.getsizeof(item)
        if total > limit:  # also ends the walk of a (never expected) cyclic structure
            return total
        if not remembered and isinstance(item, _CONTAINERS):
            stack.extend(item.keys() if isinstance(item, dict) else item)
            if isinstance(item, dict):
                stack.extend(item.values())
    return total


class JobMemory:
    """One job's account: bytes charged so far against `limit_mb` MiB."""

    def __init__(self, limit_mb: int, executor: Executor | None = None) -> None:
        self.limit_mb = limit_mb
        self.limit = limit_mb * MIB
        self.used = 0
        self.executor = executor  # where big values are measured (None: the default pool)
        self._known: dict[int, Any] = {}  # id -> (container, size): re-emissions cost O(1)

    def left(self) -> int:
        return max(0, self.limit - self.used)

    def note(self, value: Any, size: int) -> None:
        """Remember the size of a container measured elsewhere (a sandbox worker)."""
        if isinstance(value, _CONTAINERS):
            self._known[id(value)] = (value, size)

    def counting(self, emit: Callable[[Any], None]) -> Callable[[Any], None]:
        """`emit` that charges `EVENT_BYTES` for each event (checked at the next value)."""

        def counted(event: Any) -> None:
            self.used += EVENT_BYTES
            emit(event)

        return counted

    def charge_now(self, value: Any) -> bool:
        """Charge a value that is quick to measure (False, charging nothing, for one that
        must be measured off the event loop: then await `charge`)."""
        if type(value) in _SCALARS:
            size = sys.getsizeof(value)
        else:
            size = _measure(value, self.left(), self._known, INLINE_STEPS)
            if size is None:
                return False
        self._add(value, size)
        return True

    async def charge(self, value: Any) -> None:
        """Add `value`'s size; `LimitExceeded` when the job's total goes past the limit."""
        if self.charge_now(value):
            return
        loop = asyncio.get_running_loop()
        size = await loop.run_in_executor(
            self.executor, value_size, value, self.left(), self._known
        )
        self._add(value, size)

    def _add(self, value: Any, size: int) -> None:
        self.note(value, size)
        self.used += size
        if self.used > self.limit:
            raise over_budget(self.limit_mb)


def over_budget(limit_mb: int) -> LimitExceeded:
    """The error of a job whose values would take more than `limit_mb` MiB."""
    return LimitExceeded(
        "the job's values would take more memory than its budget",
        "job_memory_mb",
        f"{limit_mb} MiB",
    )
