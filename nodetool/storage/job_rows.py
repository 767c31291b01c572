"""Job rows to records and events to rows: JSON encoded and decoded in a thread when large.

Results, params, graphs and events may be megabytes of JSON (`codec.json_is_large` decides
cheaply); decoding them on the event loop would hold up every other request.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from nodetool.storage.base import Record
from nodetool.storage.codec import dumps, dumps_in_pieces, iso, loads
from nodetool.storage.large_json import OFF_LOOP_BYTES, json_is_large
from nodetool.storage.schema import jobs

# bookkeeping, not in job records
INTERNAL = ("event_seq", "owner", "cancel_requested", "lease_until")
COLUMNS = tuple(column for column in jobs.c if column.name not in INTERNAL)
NO_RESULTS = tuple(column for column in COLUMNS if column.name != "results")  # known already


def event_rows(job_id: str, events: list[Record], stamp: datetime) -> list[dict[str, Any]]:
    """`job_events` rows of numbered events (each event's JSON without its `seq`)."""
    return [
        {
            "job_id": job_id,
            "seq": int(event["seq"]),
            "event": dumps_in_pieces({k: v for k, v in event.items() if k != "seq"}),
            "created_at": stamp,
        }
        for event in events
    ]


def stored_events(rows: list[Any]) -> list[Record]:
    return [{**loads(row.event), "seq": row.seq} for row in rows]


def _json_length(rows: list[Any]) -> int:
    """Characters of JSON text in job rows (what decoding them walks)."""
    return sum(len(row.params) + len(row.graph or "") + len(_results(row) or "") for row in rows)


def _results(row: Any) -> str | None:
    """The row's results JSON (None also for a row selected without them)."""
    return row._mapping.get("results")


async def records(rows: list[Any]) -> list[Record]:
    """Job records of rows, decoded in a thread when their JSON is large."""
    if _json_length(rows) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(lambda: [_record(row) for row in rows])
    return [_record(row) for row in rows]


async def one_record(row: Any) -> Record:
    return (await records([row]))[0]


def _record(row: Any) -> Record:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "workflow_id": row.workflow_id,
        "thread_id": row.thread_id,
        "status": row.status,
        "params": loads(row.params),
        "graph": loads(row.graph),
        "results": loads(_results(row)),
        "error": row.error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
    }


async def encoded_events(events: list[Record]) -> list[str]:
    """Each event as JSON text, in a thread when they are large."""
    if json_is_large(events):
        return await asyncio.to_thread(lambda: [dumps_in_pieces(event) for event in events])
    return [dumps(event) for event in events]


async def decoded_events(rows: list[Any]) -> list[Record]:
    """Stored event rows back to events (with their `seq`), in a thread when large."""
    if sum(len(row.event) for row in rows) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(stored_events, rows)
    return stored_events(rows)
