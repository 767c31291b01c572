"""Group commit: writes that arrive while a transaction is under way share the next one.

Each durable commit costs a sync to disk (SQLite's `synchronous=FULL`, PostgreSQL's WAL
flush); under concurrent load one commit then serves every write that queued meanwhile. A
write alone is committed at once, as before. If a shared transaction fails, each of its writes
is retried alone, so one bad write never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from nodetool.storage.db import Database
from nodetool.storage.sqlite_writer import Execute

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Commits items with `write(execute, items)` (`Database.run_driver_write`), batching those
    that queue meanwhile."""

    def __init__(self, db: Database, write: Callable[[Execute, list[T]], None]) -> None:
        self._db = db
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._runner: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> None:
        """Write `item`; returns once it is committed (a cancelled caller does not stop it)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run())
        await done  # cancelled with its caller, the item is written all the same

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
        finally:
            self._runner = None
            for _, done in self._queue:  # only when this task itself was cancelled
                if not done.done():
                    done.set_exception(RuntimeError("the database writer stopped"))

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        items = [item for item, _ in batch]
        try:
            await self._db.run_driver_write(lambda execute: self._write(execute, items))
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._commit([one])
                return
            _settle(batch[0][1], exc)
            return
        except BaseException as exc:
            for _, done in batch:
                _settle(done, exc)
            raise
        for _, done in batch:
            _settle(done, None)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
        return
    done.set_exception(exc)
    done.exception()  # retrieved, so a caller that went away leaves no warning
