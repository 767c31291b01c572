"""Durability: SIGKILL a process while it writes; every acknowledged message survives intact."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from nodetool.config import Settings
from nodetool.storage import Store, open_store
from tests.support.storage import BACKENDS, backend_settings

REPO = Path(__file__).resolve().parents[1]
USER = "durable-user"
THREAD = "durable-thread"
ACKS_BEFORE_KILL = 150
HANG_GUARD_S = 120  # only stops a broken writer from hanging the suite


async def _write_until_killed(settings: Settings) -> dict[str, str]:
    """Run the writer process, SIGKILL it mid-stream; the acknowledged {id: content}."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.storage_writer",
        str(settings.data_dir),
        settings.database_url or "-",
        USER,
        THREAD,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    acked: dict[str, str] = {}
    assert proc.stdout is not None

    async def read_acks() -> None:
        while len(acked) < ACKS_BEFORE_KILL:
            line = await proc.stdout.readline()
            if not line:
                _, err = await proc.communicate()
                raise AssertionError(f"writer exited early: {err.decode()[-2000:]}")
            _record(line, acked)

    try:
        await asyncio.wait_for(read_acks(), HANG_GUARD_S)
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # acks printed before the kill but not read yet
        _record(line, acked)
    return acked


def _record(line: bytes, acked: dict[str, str]) -> None:
    parts = line.decode().rstrip("\n").split(" ", 2)
    if parts[0] == "ack" and len(parts) == 3:
        acked[parts[1]] = parts[2]


async def _all_messages(store: Store) -> list[dict]:
    out, cursor = [], None
    while True:
        page, cursor = await store.messages.list(USER, THREAD, cursor=cursor, limit=1000)
        out += page
        if cursor is None:
            return out


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigkill_while_writing_loses_no_acknowledged_message(backend, tmp_path) -> None:
    async with backend_settings(backend, tmp_path) as settings:
        acked: dict[str, str] = {}
        for _round in range(2):  # crash, recover, crash again on the recovered database
            acked.update(await _write_until_killed(settings))
            store = await open_store(settings)
            try:
                stored = await _all_messages(store)
                by_id = {m["id"]: m for m in stored}
                assert len(by_id) == len(stored) >= len(acked)
                missing = [i for i in acked if i not in by_id]
                assert not missing, f"{len(missing)} acknowledged messages lost"
                for message_id, content in acked.items():
                    assert by_id[message_id]["content"] == content
                    assert by_id[message_id]["role"] == "user"
                if backend == "sqlite":
                    async with store.db.read() as conn:
                        check = (await conn.execute(text("PRAGMA integrity_check"))).scalars()
                        assert list(check) == ["ok"]
                        fks = (await conn.execute(text("PRAGMA foreign_key_check"))).all()
                        assert fks == []
                after = await store.messages.add(USER, THREAD, {"role": "user", "content": "ok"})
                assert (await store.messages.recent(USER, THREAD, 1))[0]["id"] == after["id"]
            finally:
                await store.close()
