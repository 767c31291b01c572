"""When a generation request may go to the embedded model's child, and in which order.

Requests are admitted one at a time in arrival order (an `asyncio.Lock` wakes its waiters
first come, first served). While a slot is free a request goes at once, so a burst shares one
batch; once every slot is busy each waits until the one before is under way. A reproducible
request (greedy, or a fixed seed) waits until nothing is at the child and is decoded alone,
and the requests after it wait for its end: llama.cpp's kernels are not batch-invariant, so a
shared batch could change its tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Admission:
    """FIFO admission to a child with `parallel` slots; see the module docstring."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.line = asyncio.Lock()  # held while a request is being admitted and sent
        self.in_flight = 0  # requests admitted or waiting, not yet finished
        self.at_child = 0  # of those, the ones sent to the child
        self._quiet = asyncio.Event()  # set while no request is at the child
        self._quiet.set()
        self._alone = False  # a reproducible request is being decoded alone
        self._unsettled = False  # a request was given up: the child may still be decoding it

    def arrive(self) -> None:
        self.in_flight += 1

    async def turn(self, alone: bool, settle: Callable[[], Awaitable[None]]) -> None:
        """Wait (holding `line`) until this request may be sent, then count it as sent.

        `settle` waits until the child has stopped decoding requests that were given up.
        """
        if alone or self._alone:
            await self._quiet.wait()
        if alone and self._unsettled:
            await settle()
            self._unsettled = False
        self.at_child += 1
        self._quiet.clear()
        self._alone = alone

    @property
    def slot_free(self) -> bool:
        """Whether the request being admitted gets a slot at once."""
        return self.in_flight <= self.parallel

    def leave(self, sent: bool, alone: bool, *, settled: bool = False) -> None:
        """Count a request out; `settled`: the child finished it (it sent the last chunk)."""
        self.in_flight -= 1
        if not sent:
            return
        self._unsettled = self._unsettled or not settled
        self.at_child -= 1
        if alone:
            self._alone = False
        if not self.at_child:
            self._quiet.set()
