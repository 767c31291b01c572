"""Auth for every app: pure ASGI middleware, static token file, Supabase verifier, CORS.

`install_auth` is imported lazily so `nodetool token` (which only needs `tokens`) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuthConfigError", "install_auth"]


def __getattr__(name: str) -> Any:
    if name == "install_auth":
        from nodetool.api.auth.middleware import install_auth

        return install_auth
    if name == "AuthConfigError":
        from nodetool.api.auth.tokens import AuthConfigError

        return AuthConfigError
    raise AttributeError(name)
