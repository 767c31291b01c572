"""Time-ordered ids: 26-character ULIDs (48-bit ms timestamp + 80 random bits, Crockford base32).

Ids sort as strings in creation order. Within one process they are strictly increasing even
when many are made in the same millisecond (the random part is incremented), so ordering rows
by id gives insertion order; across processes the order is the order of their millisecond.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase (ASCII-sorted)
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
ID_LENGTH = 26
MAX_ID_LENGTH = 128  # longest id a caller may choose (thread and workflow ids)


class IdGenerator:
    """Monotonic ULID generator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_random = 0

    def __call__(self) -> str:
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms, self._last_random = now_ms, secrets.randbits(_RANDOM_BITS)
            elif self._last_random < _RANDOM_MAX:
                self._last_random += 1
            else:  # random part exhausted within one millisecond: borrow the next one
                self._last_ms, self._last_random = self._last_ms + 1, 0
            value = (self._last_ms << _RANDOM_BITS) | self._last_random
        return encode(value)


def encode(value: int) -> str:
    """The 26-character base32 form of a 130-bit-or-less integer."""
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def timestamp_ms(id_: str) -> int:
    """The millisecond timestamp encoded in an id made by `new_id`."""
    value = 0
    for char in id_[:10]:
        value = (value << 5) | _ALPHABET.index(char)
    return value  # 10 chars = the top 50 bits of the 130-bit form = the 48-bit timestamp


new_id = IdGenerator()
