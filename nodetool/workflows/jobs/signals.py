"""Wake-ups between processes through the database: PostgreSQL `LISTEN/NOTIFY`.

`Signals.send(channel, payload)` calls this process's listeners at once and, on PostgreSQL,
sends `NOTIFY` so every other process's listeners are called too (duplicates are harmless:
listeners only re-read state). SQLite has no such mechanism: signals stay in the process.
One dedicated asyncpg connection listens and notifies; it reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("nodetool.jobs.signals")

Listener = Callable[[str], None]


class Signals:
    """Local listeners, plus PostgreSQL NOTIFY when `database_url` is PostgreSQL."""

    def __init__(self, database_url: str | None) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self._dsn = _asyncpg_dsn(database_url)
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    @property
    def remote(self) -> bool:
        """Whether signals reach other processes."""
        return self._dsn is not None

    def on(self, channel: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(payload)` for signals on `channel`; returns the unsubscribe."""
        self._listeners.setdefault(channel, set()).add(listener)
        return lambda: self._listeners.get(channel, set()).discard(listener)

    async def start(self, channels: tuple[str, ...]) -> None:
        """Listen on `channels` (PostgreSQL only); a failure is retried in the background."""
        if self._dsn is None or self._keeper is not None:
            return
        self._channels = channels
        try:
            await self._connect()
        except Exception as exc:
            log.warning("cannot LISTEN on PostgreSQL yet (%s); retrying", exc)
            self._lost.set()
        self._keeper = asyncio.create_task(self._keep())

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn, timeout=10)
        conn.add_termination_listener(lambda _c: self._lost.set())
        for channel in self._channels:
            await conn.add_listener(channel, self._deliver)
        self._conn = conn
        self._lost.clear()

    async def _keep(self) -> None:
        delay = 0.25
        while True:
            await self._lost.wait()
            self._conn = None
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception as exc:
                if delay == 0.25:
                    log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", exc)
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.25
                self._fire_all()  # wake-ups may have been missed: everyone re-reads

    def _deliver(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self._fire(channel, payload)

    def fire_local(self, channel: str, payload: str) -> None:
        """Call this process's listeners only."""
        self._fire(channel, payload)

    def _fire(self, channel: str, payload: str) -> None:
        for listener in list(self._listeners.get(channel, ())):
            try:
                listener(payload)
            except Exception:
                log.exception("signal listener failed on %s", channel)

    def _fire_all(self) -> None:
        for channel in list(self._listeners):
            self._fire(channel, "*")

    async def send(self, channel: str, payload: str) -> None:
        self._fire(channel, payload)
        conn = self._conn
        if conn is None:
            return
        try:
            async with self._lock:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
        except Exception as exc:  # the keeper reconnects; followers re-check on their timeout
            log.debug("NOTIFY %s failed: %s", channel, exc)

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._conn is not None:
            try:
                await self._conn.close(timeout=5)
            except Exception:
                self._conn.terminate()


def _asyncpg_dsn(database_url: str | None) -> str | None:
    """The plain `postgresql://` DSN of a PostgreSQL URL, else None."""
    if not database_url:
        return None
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
