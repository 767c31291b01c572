"""The request's user: the auth middleware records it in the ASGI scope, handlers read it here."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from nodetool.config import DEFAULT_USER


def set_user_id(scope: MutableMapping[str, Any], user_id: str) -> None:
    """Record the authenticated user of this request (HTTP or WebSocket)."""
    scope.setdefault("state", {})["user_id"] = user_id


def user_id_of(scope: Mapping[str, Any]) -> str:
    """The request's authenticated user; `DEFAULT_USER` when auth is off."""
    return scope.get("state", {}).get("user_id", DEFAULT_USER)
