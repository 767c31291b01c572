"""Database connections: URL selection, SQLite pragmas and write serialisation.

SQLite (the embedded default) runs in WAL mode with `synchronous=FULL`, so a committed write
survives a crash of the process or the machine. Reads use a small connection pool; writes go
through one connection guarded by an asyncio lock and start with `BEGIN IMMEDIATE`, so writers
in this process queue without ever failing and writers in other processes wait on the busy
timeout. PostgreSQL uses one pooled asyncpg engine and ordinary transactions.

Stores run their transactions shielded (`run_write`, `run_read`, `all`, `first`): a caller
cancelled mid-query does not tear a connection down mid-statement; the work completes (or
fails) on its own and the caller sees the cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, Executable, Row, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from nodetool.config import Settings, SettingsError
from nodetool.storage.sqlite_writer import Execute, SqliteWriter

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
PING_IDLE = 5.0  # seconds unused after which a pooled PostgreSQL connection is checked
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


def database_url(settings: Settings) -> str:
    """The async SQLAlchemy URL for the settings; creates the SQLite file's directory."""
    raw = settings.database_url or settings.effective_database_url
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise SettingsError("invalid value for NODETOOL_DATABASE_URL: not a URL")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        url = f"sqlite+aiosqlite://{rest}"
        path = make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            raise SettingsError(
                "invalid value for NODETOOL_DATABASE_URL: SQLite needs a file path "
                "(sqlite:///path/to/nodetool.db)"
            )
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return url
    raise SettingsError(
        f"invalid value for NODETOOL_DATABASE_URL: unsupported scheme {scheme!r} "
        "(use postgresql://... or sqlite:///path)"
    )


def _sqlite_engine(url: str, *, pool_size: int, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=BUSY_TIMEOUT_MS / 1000,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
    )
    _sqlite_session(engine.sync_engine, immediate=immediate)
    return engine


def _sqlite_sync_writer(url: str) -> Engine:
    """A synchronous engine on the same file, whose one connection the writer thread uses
    (`Database.run_driver_write`)."""
    engine = create_engine(
        make_url(url).set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    _sqlite_session(engine, immediate=True)
    return engine


def _sqlite_session(engine: Engine, *, immediate: bool) -> None:
    """The pragmas on every new connection, and our own BEGIN (IMMEDIATE for writers)."""
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled connection before use only when it sat unused for `PING_IDLE` seconds
    (a dead one is replaced). A ping on every checkout would cost three round trips per
    transaction; a busy connection has just proved itself."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE:
            return
        try:
            dbapi_conn.ping()
        except Exception as exc:
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


class Database:
    """One database: `read()`/`write()` transactions and their shielded `run_*` forms."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self._read_engine = _sqlite_engine(url, pool_size=min(pool_size, 4), immediate=False)
            self._write_engine = _sqlite_engine(url, pool_size=1, immediate=True)
            self._lock: asyncio.Lock | None = asyncio.Lock()
            self._writer: SqliteWriter | None = None  # started on first `run_driver_write`
        elif self.dialect == "postgresql":
            try:
                import asyncpg  # noqa: F401
            except ImportError:
                raise SettingsError(
                    "NODETOOL_DATABASE_URL is PostgreSQL but asyncpg is not installed "
                    "(pip install 'nodetool[postgres]')"
                ) from None
            engine = create_async_engine(url, pool_size=pool_size, max_overflow=2 * pool_size)
            _ping_when_idle(engine)
            self._read_engine = self._write_engine = engine
            self._lock = None
        else:
            raise SettingsError(f"unsupported database backend {self.dialect!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read transaction (rolled back on exit)."""
        async with self._read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on normal exit, rolled back on error."""
        if self._lock is None:
            async with self._write_engine.begin() as conn:
                yield conn
            return
        async with self._lock, self._write_engine.begin() as conn:
            yield conn

    async def run_write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` in a write transaction that completes even if the caller is cancelled."""

        async def transaction() -> T:
            async with self.write() as conn:
                return await fn(conn)

        return await _shielded(transaction())

    @property
    def write_dialect(self) -> Dialect:
        """The dialect `run_driver_write`'s SQL is written for (its positional paramstyle)."""
        return self._write_engine.dialect

    async def run_driver_write(self, fn: Callable[[Execute], T]) -> T:
        """Run `fn(execute)` in a write transaction that completes even if the caller is
        cancelled; `execute(sql, params)` runs driver SQL (`write_dialect`'s positional
        paramstyle) and returns the rowcount. On SQLite the whole transaction is one hop to
        the writer thread (`SqliteWriter`: the async driver hops to its thread for every call,
        about ten for a small write); on PostgreSQL it runs on the async connection."""
        if self._lock is None:

            async def transaction() -> T:
                async with self.write() as conn:
                    return await conn.run_sync(lambda sync: fn(_driver_execute(sync)))

            return await _shielded(transaction())

        async with self._lock:  # the writer thread completes a transaction it was given
            if self._writer is None:
                self._writer = SqliteWriter(_sqlite_sync_writer(self.url))
            return await self._writer.run(fn)

    async def run_read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` in a read transaction; a cancelled caller never interrupts the driver."""

        async def transaction() -> T:
            async with self.read() as conn:
                return await fn(conn)

        return await _shielded(transaction())

    async def all(self, query: Executable) -> Sequence[Row[Any]]:
        """Every row of one query."""

        async def run(conn: AsyncConnection) -> Sequence[Row[Any]]:
            return (await conn.execute(query)).all()

        return await self.run_read(run)

    async def first(
        self, query: Executable, params: dict[str, Any] | None = None
    ) -> Row[Any] | None:
        """The first row of one query (with `params` for its bound parameters), or None."""

        async def run(conn: AsyncConnection) -> Row[Any] | None:
            return (await conn.execute(query, params)).first()

        return await self.run_read(run)

    async def dispose(self) -> None:
        await self._read_engine.dispose()
        if self._write_engine is not self._read_engine:
            await self._write_engine.dispose()
        if self._lock is not None and self._writer is not None:
            async with self._lock:  # after any write under way
                await self._writer.close()
                self._writer = None


def _driver_execute(conn: Connection) -> Execute:
    def execute(sql: str, params: Sequence[Any] = ()) -> int:
        return conn.exec_driver_sql(sql, tuple(params)).rowcount

    return execute


async def _shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` in its own task, so cancelling the caller does not cancel the database work
    (cancelling drivers mid-statement tears connections down)."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_consume_exception)
    return await asyncio.shield(task)


def _consume_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so an abandoned failing write logs no warning
