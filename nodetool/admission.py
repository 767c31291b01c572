"""One admission limit for the work that costs upstream calls: `/v1/*` requests and `/chat`
turns share `NODETOOL_MAX_CONCURRENT_COMPLETIONS` slots (workflow jobs are bounded by their
queue, `NODETOOL_MAX_CONCURRENT_JOBS`).

Beyond the limit new work is refused at once (HTTP 429 with `Retry-After`, an `overloaded`
error frame on `/chat`), so an overloaded server sheds load instead of queueing it. One
process, one event loop: a plain counter is enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nodetool.errors import OverloadedError


class Admission:
    """A counter of work in flight with a hard limit."""

    __slots__ = ("limit", "inflight")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def try_acquire(self) -> bool:
        """Take a slot; False when all are in use."""
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def acquire(self) -> None:
        """Take a slot or raise `OverloadedError` (429, `Retry-After: 1`)."""
        if not self.try_acquire():
            raise self.overloaded()

    def release(self) -> None:
        if self.inflight > 0:
            self.inflight -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block (raises when none is free)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def overloaded(self) -> OverloadedError:
        return OverloadedError(
            f"The server is at capacity ({self.limit} requests and chat turns in flight); "
            "retry shortly.",
            headers={"Retry-After": "1"},
        )
