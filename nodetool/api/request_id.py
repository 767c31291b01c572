"""Request ids: `x-request-id` on every HTTP response, and in the access log line.

The client's `X-Request-Id` is echoed when it is a sane token (printable ASCII without spaces,
at most 128 characters); otherwise a new id (`req_` + 32 hex digits) is made. The id is kept
in a context variable for the request's task, so the uvicorn access log line (written while
the response starts) ends with `request_id=<id>` when uvicorn runs with `uvicorn_log_config()`
(the server commands do), and `scope["state"]["request_id"]` has it. The layer that sets it is
`nodetool.api.request_layer.RequestLayer`.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
from contextvars import ContextVar
from typing import Any

from starlette.types import Scope

HEADER = b"x-request-id"
_random = random.Random()  # seeded from os.urandom (again in a forked child): unique ids
os.register_at_fork(after_in_child=_random.seed)
_bits = _random.getrandbits
_SANE = re.compile(rb"^[\x21-\x7e]{1,128}$")
current_request_id: ContextVar[str | None] = ContextVar("nodetool_request_id", default=None)


def random_hex(digits: int) -> str:
    """`digits` random hex digits for ids that must be unique, not secret (no system call)."""
    if digits % 2:
        return f"{_bits(digits * 4):0{digits}x}"
    return _bits(digits * 4).to_bytes(digits // 2, "big").hex()  # twice as fast as formatting


def new_request_id() -> str:
    return "req_" + random_hex(32)


def incoming(scope: Scope) -> str | None:
    """The client's `X-Request-Id` if it is a sane token."""
    for name, value in scope.get("headers") or ():
        if name == HEADER:
            return value.decode("ascii") if _SANE.match(value) else None
    return None


class RequestIdLogFilter(logging.Filter):
    """Sets `record.request_id` (`-` outside a request) for the access log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with ` request_id=<id>` ending each access line."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    access = config["formatters"]["access"]
    access["fmt"] = access["fmt"].rstrip() + " request_id=%(request_id)s"
    config["filters"] = {"request_id": {"()": RequestIdLogFilter}}
    config["handlers"]["access"]["filters"] = ["request_id"]
    return config
