"""JSON that may be large (a job's results, the events carrying them), kept off the event loop.

`json_is_large` decides cheaply: it looks at a bounded number of objects and takes strings by
their length. Moving `json.dumps` to a thread is not enough by itself: the C encoder holds the
GIL for the whole call, so a 50 MB value would stop the event loop just the same. So
`encode_in_pieces` builds the text from many short encoder calls (small subtrees whole, big
strings in slices), between which the event loop's thread gets its turn. Its text is exactly
what `json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)` gives.
"""

from __future__ import annotations

from collections.abc import Callable
from json import dumps
from typing import Any

OFF_LOOP_BYTES = 256 * 1024  # JSON longer than this is encoded/decoded in a thread
ESTIMATE_STEPS = 2048  # objects looked at on the loop; a value with more counts as large
SLICE = 256 * 1024  # characters of a long string encoded in one call
BATCH = 1024  # most small items of a big list or object encoded in one call
_SMALL_SCALARS = (int, float, bool, type(None))

Default = Callable[[Any], Any] | None


class JsonTooLong(ValueError):
    """The text would be longer than the `limit` given to `encode_in_pieces`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON text is longer than {limit} characters")
        self.limit = limit


def json_is_large(value: Any, limit: int = OFF_LOOP_BYTES) -> bool:
    """Whether `value` as JSON may be longer than `limit` characters. Looks at no more than
    `ESTIMATE_STEPS` objects (a value with more, or holding objects of other types such as
    pydantic models, counts as large); strings count their length."""
    return _estimate(value, limit) is None


def _estimate(value: Any, limit: int) -> int | None:
    """About how long `value` is as JSON; None when it may be longer than `limit`."""
    total, stack, steps = 0, [value], 0
    while stack:
        item = stack.pop()
        steps += 1
        if steps > ESTIMATE_STEPS:
            return None
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, _SMALL_SCALARS):
            total += 8
        elif isinstance(item, dict):
            total += 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += len(item) + 2
            stack.extend(item)
        else:
            return None
        if total > limit:
            return None
    return total


def encode_in_pieces(value: Any, default: Default = None, limit: int | None = None) -> str:
    """Compact JSON of `value` built from short encoder calls (see the module docstring);
    `JsonTooLong` as soon as it grows past `limit` characters. Errors as `json.dumps`."""
    parts: list[str] = []
    size = 0

    def out(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if limit is not None and size > limit:
            raise JsonTooLong(limit)

    _encode(value, out, default)
    return "".join(parts)


def _whole(value: Any, default: Default) -> str:
    return dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)


def _encode(value: Any, out: Callable[[str], None], default: Default) -> None:
    if not json_is_large(value):
        out(_whole(value, default))
    elif isinstance(value, str):
        out('"')
        for start in range(0, len(value), SLICE):
            out(_whole(value[start : start + SLICE], None)[1:-1])
        out('"')
    elif isinstance(value, dict):
        _items(list(value.items()), out, default, "{", "}")
    elif isinstance(value, list | tuple):
        _items(value, out, default, "[", "]")
    elif default is not None and not isinstance(value, _SMALL_SCALARS):
        _encode(default(value), out, default)
    else:
        out(_whole(value, default))


def _items(
    items: Any, out: Callable[[str], None], default: Default, open_: str, close: str
) -> None:
    """A big list (items) or object (its (key, value) pairs): runs of small items encoded
    together, big ones piece by piece."""
    pairs = open_ == "{"
    out(open_)
    batch: list[Any] = []
    batch_size = 0
    first = True

    def flush() -> None:
        nonlocal first, batch_size
        if batch:
            text = _whole(dict(batch) if pairs else batch, default)[1:-1]
            out(text if first else "," + text)
            first = False
            batch.clear()
            batch_size = 0

    for item in items:
        size = _estimate(item, OFF_LOOP_BYTES)  # a pair: its key and value
        if size is not None:
            batch.append(item)
            batch_size += size
            if len(batch) >= BATCH or batch_size >= SLICE:
                flush()
            continue
        flush()
        if not first:
            out(",")
        first = False
        if pairs:
            out(_whole({item[0]: None}, default)[1:-6] + ":")  # the key as json.dumps writes it
            _encode(item[1], out, default)
        else:
            _encode(item, out, default)
    flush()
    out(close)


def utf8_in_pieces(text: str) -> bytes:
    """`text.encode()` slice by slice (the GIL is let go between slices)."""
    return b"".join(text[i : i + SLICE].encode() for i in range(0, len(text), SLICE))
