"""Keep secrets out of every log line.

Redacted: the values of secret query parameters (`api_key`, `token`, `access_token`, ...) with
the parameter name URL-decoded first (`api%5Fkey=` is `api_key=`), `Bearer` credentials, and
the userinfo of URLs (`http://user:pw@host` becomes `http://[REDACTED]@host`).

A log-record factory applies this to every record the process creates, whatever its logger
(uvicorn's access and error logs, ours, libraries'), rewriting the message and its string
arguments before any handler formats them; uvicorn's access formatter builds its request line
from those arguments.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[REDACTED]"
SECRET_KEYS = frozenset(
    {"api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token", "secret"}
)
_PARAM = re.compile(r"([?&;]|\A)([^=&?;\s\"'#]{1,100})=([^&;#\s\"']*)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"'<>]+@")


def _secret_name(raw: str) -> bool:
    name = raw
    for _ in range(3):  # double-encoded names (`api%255Fkey`) too
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower() in SECRET_KEYS


def _param(match: re.Match[str]) -> str:
    if not _secret_name(match.group(2)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={REDACTED}"


def redact(text: str) -> str:
    """`text` with secret query values, bearer tokens and URL userinfo replaced."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "@" in text:
        text = _USERINFO.sub(r"\1" + REDACTED + "@", text)
    if "earer" in text:
        text = _BEARER.sub(r"\1" + REDACTED, text)
    return text


def _redact_args(args: Any) -> Any:
    if isinstance(args, tuple) and args:
        return tuple(redact(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, dict) and args:
        return {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
    return args


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    record.args = _redact_args(record.args)
    return record


class RedactTokensFilter(logging.Filter):
    """The same redaction as a filter (for handlers that receive foreign records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class _RedactingFactory:
    """Wraps the process's log-record factory; marked so it is installed once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(self.inner(*args, **kwargs))


def install_log_redaction() -> None:
    """Redact every log record this process creates (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))
