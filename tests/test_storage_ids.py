"""Time-ordered ids: sortable, strictly increasing within a process, carrying their time."""

from __future__ import annotations

import threading
import time

from nodetool.storage.ids import ID_LENGTH, IdGenerator, encode, timestamp_ms


def test_ids_are_strictly_increasing_even_within_one_millisecond() -> None:
    make = IdGenerator()
    ids = [make() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == ID_LENGTH and i.isalnum() and i == i.lower() for i in ids)


def test_ids_carry_their_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    made = IdGenerator()()
    after = time.time_ns() // 1_000_000
    assert before <= timestamp_ms(made) <= after


def test_ids_from_many_threads_are_unique() -> None:
    make = IdGenerator()
    results: list[list[str]] = [[] for _ in range(8)]

    def work(slot: list[str]) -> None:
        slot.extend(make() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for slot in results for i in slot]
    assert len(set(every)) == len(every)
    assert all(slot == sorted(slot) for slot in results)


def test_encoding_order_matches_numeric_order() -> None:
    values = [0, 1, 31, 32, 2**80, 2**80 + 1, 2**127, 2**128 - 1]
    assert [encode(v) for v in values] == sorted(encode(v) for v in values)
