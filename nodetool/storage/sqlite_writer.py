"""SQLite's writer thread: whole write transactions on one DB-API connection, one hop each.

`Database.run_driver_write` hands a transaction (a function given `execute`) to this thread
and awaits its future. The thread keeps its connection open and runs `BEGIN IMMEDIATE`, the
function's driver SQL and `COMMIT` on the `sqlite3` connection itself: SQLAlchemy's
transaction and execution layers cost ~0.16 ms of CPU per small write, a thread-pool hop
another ~0.1 ms; the commit's sync to disk (`synchronous=FULL`) stays as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
Execute = Callable[[str, Sequence[Any]], int]  # driver SQL, positional parameters -> rowcount
_Job = tuple["asyncio.Future[Any]", Callable[[Execute], Any]]


class SqliteWriter:
    """One thread, one connection (from `engine`: its connect events set the pragmas)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None  # the pool's proxy around the sqlite3 connection, kept open
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="nodetool-sqlite-writer")
        self._thread.daemon = True  # an idle writer never holds the process; a commit is atomic
        self._thread.start()

    def run(self, fn: Callable[[Execute], T]) -> asyncio.Future[T]:
        """`fn(execute)` in one transaction (committed when it returns, rolled back when it
        raises; driver errors raise SQLAlchemy's exceptions, as its engines do)."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((done, fn))
        return done

    async def close(self) -> None:
        """After the transactions queued already: close the connection, end the thread."""
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            done, fn = job
            error: BaseException | None = None
            result = None
            try:
                result = self._transaction(fn)
            except BaseException as exc:  # handed to the waiting caller
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                done.get_loop().call_soon_threadsafe(_settle, done, result, error)
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()

    def _transaction(self, fn: Callable[[Execute], T]) -> T:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
        dbapi = self._conn.dbapi_connection
        cursor = dbapi.cursor()

        def execute(sql: str, params: Sequence[Any] = ()) -> int:
            try:
                return cursor.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise self._wrapped(exc, sql, params, dbapi, cursor) from exc

        try:
            execute("BEGIN IMMEDIATE")
            result = fn(execute)
            execute("COMMIT")
            return result
        except BaseException:
            if self._conn is not None and dbapi.in_transaction:
                dbapi.rollback()
            raise
        finally:
            cursor.close()

    def _wrapped(
        self, exc: sqlite3.Error, sql: str, params: Sequence[Any], dbapi: Any, cursor: Any
    ) -> BaseException:
        """SQLAlchemy's exception for a driver error; a lost connection is dropped (the next
        transaction opens a new one)."""
        dialect = self._engine.dialect
        lost = dialect.is_disconnect(exc, dbapi, cursor)
        if lost:
            self._conn.invalidate(exc)
            self._conn = None
        return DBAPIError.instance(
            sql, params, exc, sqlite3.Error, connection_invalidated=lost, dialect=dialect
        )


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():  # the caller was cancelled
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
