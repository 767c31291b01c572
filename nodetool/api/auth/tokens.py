"""The static auth token: discovery, first-time creation (mode 0600) and rotation.

Order of discovery (docs/protocol.md §10): `WORKER_AUTH_TOKEN`, else `worker_auth_token` in
`<config_dir>/deployment.yaml`, else a new `secrets.token_urlsafe(32)` written there.
The file is created with mode 0600 from its first byte and rewritten atomically.
No FastAPI here: `nodetool token` imports this module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nodetool.config import Settings

DEPLOYMENT_FILE = "deployment.yaml"
TOKEN_KEY = "worker_auth_token"


class AuthConfigError(ValueError):
    """Auth cannot work with these settings or this token file; the message says why."""


@dataclass(frozen=True)
class StaticToken:
    """The effective static token and where it came from."""

    token: str
    source: str  # "env" | "file" | "created" | "rotated"
    path: Path | None = None

    @property
    def created(self) -> bool:
        return self.source in ("created", "rotated")


def token_path(settings: Settings) -> Path:
    return Path(settings.config_dir).expanduser() / DEPLOYMENT_FILE


def new_token() -> str:
    """32 random bytes, url-safe base64."""
    return secrets.token_urlsafe(32)


def _read(path: Path) -> dict[str, Any] | None:
    """The file's mapping, None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # no snippet of the file in the message: it holds a secret
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise AuthConfigError(f"{path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AuthConfigError(f"{path} must hold a YAML mapping (key: value lines)")
    return data


def _token_in(data: dict[str, Any], path: Path) -> str | None:
    value = data.get(TOKEN_KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AuthConfigError(f"{TOKEN_KEY} in {path} must be a string")
    return value


def _warn_if_readable(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"warning: {path} is readable by other users; run `chmod 600 {path}`",
                file=sys.stderr,
            )


def _dump(data: dict[str, Any]) -> bytes:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False).encode("utf-8")


def _write_new_0600(path: Path, payload: bytes) -> None:
    """Create `path` (must not exist) with mode 0600 from the first byte."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        raise AuthConfigError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_0600(path: Path, payload: bytes) -> Path:
    """A fully written 0600 temp file beside `path`."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            _write_new_0600(tmp, payload)
        except FileExistsError:
            continue
        return tmp
    raise AuthConfigError(f"cannot create a temporary file beside {path}")


def _ensure_dir(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise AuthConfigError(f"cannot create {path.parent}: {exc.strerror}") from None


def _create(path: Path, data: dict[str, Any]) -> bool:
    """Publish a new file atomically; False when another process created it first."""
    tmp = _temp_0600(path, _dump(data))
    try:
        os.link(tmp, path)  # atomic and never clobbers: readers never see a partial file
    except FileExistsError:
        return False
    except OSError:  # filesystems without hard links: exclusive create in place
        try:
            _write_new_0600(path, _dump(data))
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def _replace(path: Path, data: dict[str, Any]) -> None:
    """Rewrite an existing file atomically (0600 temp file + os.replace)."""
    tmp = _temp_0600(path, _dump(data))
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise AuthConfigError(f"cannot write {path}: {exc.strerror}") from None


def read_file_token(settings: Settings) -> str | None:
    """The token stored in deployment.yaml, or None."""
    path = token_path(settings)
    data = _read(path)
    return None if data is None else _token_in(data, path)


def load_static_token(settings: Settings, *, create: bool = True) -> StaticToken | None:
    """The effective static token; creates the file when missing and `create` is true."""
    if settings.worker_auth_token:
        return StaticToken(settings.worker_auth_token, "env")
    path = token_path(settings)
    for _ in range(3):
        data = _read(path)
        if data is not None:
            token = _token_in(data, path)
            if token:
                _warn_if_readable(path)
                return StaticToken(token, "file", path)
            if not create:
                return None
            return StaticToken(rotate_static_token(settings).token, "created", path)
        if not create:
            return None
        _ensure_dir(path)
        token = new_token()
        if _create(path, {TOKEN_KEY: token}):
            return StaticToken(token, "created", path)
        # lost a creation race with another process: read what it wrote
    raise AuthConfigError(f"cannot create {path}")


def rotate_static_token(settings: Settings) -> StaticToken:
    """Write a new token to deployment.yaml, keeping the file's other keys."""
    path = token_path(settings)
    _ensure_dir(path)
    token = new_token()
    data = _read(path)
    if data is None:
        if _create(path, {TOKEN_KEY: token}):
            return StaticToken(token, "created", path)
        data = _read(path) or {}
    data[TOKEN_KEY] = token
    _replace(path, data)
    return StaticToken(token, "rotated", path)


def uses_static_token(settings: Settings) -> bool:
    """Whether the servers check the static token with these settings."""
    mode = settings.auth_provider
    return mode == "static" or (mode == "supabase" and settings.supabase_allow_static_token)


def announce(token: StaticToken) -> None:
    """Print a newly generated token once, on stderr (never through logging)."""
    if token.created:
        sys.stderr.write(
            f"nodetool: generated a new auth token, saved (mode 0600) in {token.path}:\n"
            f"  {token.token}\n"
            "Send it as 'Authorization: Bearer <token>'; `nodetool token` prints it again.\n"
        )
        sys.stderr.flush()


def ensure_static_token(settings: Settings) -> StaticToken:
    """Discover or create the static token; print it when it was just generated."""
    token = load_static_token(settings)
    assert token is not None
    announce(token)
    return token
