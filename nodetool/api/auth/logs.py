"""Keep tokens out of logs: redact `api_key=`/`token=` query values in uvicorn's log lines.

uvicorn writes HTTP request lines to `uvicorn.access` and WebSocket handshakes
(`"WebSocket /chat?api_key=..." [accepted]`) to `uvicorn.error`; both get the filter.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[REDACTED]"
LOGGERS = ("uvicorn.access", "uvicorn.error")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api_key|token|access_token)=)[^&#\s\"']*")


def redact(text: str) -> str:
    """`text` with the values of secret query parameters replaced."""
    if "=" not in text:
        return text
    return _SECRET_QUERY.sub(r"\1" + REDACTED, text)


class RedactTokensFilter(logging.Filter):
    """Rewrites the record's message and string arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict) and args:
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


def install_log_redaction() -> None:
    """Attach the filter to uvicorn's loggers once per process (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
            logger.addFilter(RedactTokensFilter())
