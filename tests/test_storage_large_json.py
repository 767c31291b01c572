"""Large JSON off the event loop (`storage/large_json.py`, `codec.dumps_off_loop`): the text is
exactly `json.dumps`'s, encoding lets the loop run meanwhile, a limit stops it, and a job's
results are encoded in a worker thread before anything is written (nothing when it fails)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from nodetool.config import Settings
from nodetool.errors import InvalidRequestError
from nodetool.storage import open_store
from nodetool.storage.codec import JsonText, dumps, dumps_off_loop, loads_off_loop
from nodetool.storage.large_json import (
    ESTIMATE_STEPS,
    OFF_LOOP_BYTES,
    JsonTooLong,
    encode_in_pieces,
    json_is_large,
    utf8_in_pieces,
)

MB = 1_000_000
BIG = {"out": ["m" * MB] * 50}  # the 50 x 1 MB results that held the loop for 1.27 s


class Seen(BaseModel):
    """A value whose JSON dump notes the thread that encoded it."""

    label: str

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        THREADS.append(threading.get_ident())
        return super().model_dump(**kwargs)


THREADS: list[int] = []

VALUES = [
    BIG,
    'é\u2028\x00"\\\U0001f600' * 100_000,  # escapes, a non-BMP character, across slices
    {
        "a": ["x" * 300_000, {1: "y" * 400_000, None: 2.5, False: [1] * 5000, 0.5: "z"}],
        "b": list(range(20000)),
    },
    [float("nan"), float("inf"), {"k": "\ud800" * 300_000}],  # a lone surrogate stays as it is
    [[["z" * 300_000]]],
    {str(i): {"v": i, "s": "w" * 100} for i in range(5000)},
    [],
    {},
    {"small": [1, 2, 3]},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_pieces_make_exactly_the_text_of_json_dumps(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert encode_in_pieces(value) == expected
    if "\ud800" in expected:  # strict UTF-8 refuses a lone surrogate, in pieces as whole
        with pytest.raises(UnicodeEncodeError):
            utf8_in_pieces(expected)
    else:
        assert utf8_in_pieces(expected) == expected.encode()


def test_models_and_errors_are_as_with_json_dumps() -> None:
    value = {"items": [Seen(label="a" * 300_000), "b" * 300_000]}
    assert encode_in_pieces(value, lambda v: v.model_dump()) == dumps(value)
    with pytest.raises(TypeError):
        encode_in_pieces({"x": ["y" * OFF_LOOP_BYTES, object()]})
    with pytest.raises(InvalidRequestError, match="not JSON-serialisable"):
        asyncio.run(dumps_off_loop({"x": ["y" * OFF_LOOP_BYTES, object()]}))


def test_size_estimate_looks_at_boundedly_many_objects() -> None:
    assert not json_is_large({"a": "b" * 1000, "n": list(range(100))})
    assert json_is_large("b" * (OFF_LOOP_BYTES + 1))
    assert json_is_large(list(range(ESTIMATE_STEPS + 1)))  # many small objects: a thread
    assert json_is_large([Seen(label="x")])  # a type it does not walk: a thread


def test_a_limit_stops_the_encoding() -> None:
    with pytest.raises(JsonTooLong) as stopped:
        encode_in_pieces(BIG, limit=16 * 1024 * 1024)
    assert stopped.value.limit == 16 * 1024 * 1024
    small = {"a": "x" * 100}
    with pytest.raises(JsonTooLong):
        asyncio.run(dumps_off_loop(small, limit=50))
    assert asyncio.run(dumps_off_loop(small, limit=500)) == dumps(small)
    assert asyncio.run(dumps_off_loop(JsonText('{"as":"is"}'))) == '{"as":"is"}'


async def test_the_event_loop_keeps_turning_while_large_json_is_encoded() -> None:
    """While 50 MB are encoded in a thread the loop is never held for long: its longest wait
    is a small part of the encoding time. (Plain `json.dumps` in a thread holds the GIL from
    start to end: the loop's longest wait would be the whole encoding.)"""
    gaps: list[float] = []
    done = asyncio.Event()

    async def spin() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    spinner = asyncio.create_task(spin())
    await asyncio.sleep(0)
    started = time.perf_counter()
    try:
        text = await dumps_off_loop(BIG)
        took = time.perf_counter() - started
    finally:
        done.set()
        await spinner
    assert text == json.dumps(BIG, separators=(",", ":"), ensure_ascii=False)
    assert max(gaps) < took / 2, (max(gaps), took)
    assert await loads_off_loop(text) == BIG


async def test_job_results_are_encoded_in_a_worker_thread_before_the_write(tmp_path: Path) -> None:
    store = await open_store(Settings(data_dir=tmp_path, database_url=None, _env_file=None))
    try:
        job = await store.jobs.create("alice", None, {}, graph={"nodes": [], "edges": []})
        THREADS.clear()
        big = {"out": ["r" * MB] * 3, "seen": Seen(label="x")}
        stored = await store.jobs.update(job["id"], status="completed", results=big)
        assert THREADS and threading.get_ident() not in THREADS  # encoded in a thread
        assert stored["results"] == {"out": ["r" * MB] * 3, "seen": {"label": "x"}}

        # a value that cannot be encoded writes nothing: the job is as it was
        bad = await store.jobs.create("alice", None, {}, graph={"nodes": [], "edges": []})
        with pytest.raises(InvalidRequestError):
            await store.jobs.update(
                bad["id"], status="completed", results={"x": ["y" * MB, object()]}
            )
        assert (await store.jobs.get("alice", bad["id"]))["status"] == "queued"
    finally:
        await store.close()
