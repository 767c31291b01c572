"""A fake Supabase auth server (`GET /auth/v1/user`) on loopback for the auth tests.

Tokens are real HS256 JWTs signed with the stub's secret. The endpoint answers like GoTrue:
200 with the user (`id` = the `sub` claim) for a valid token, 401 for an expired one, 403
(`bad_jwt`) for a forged or malformed one, 401 `Invalid API key` without the right `apikey`.
`calls` counts every request, so tests can prove that a cache hit made no upstream call;
`delay` slows every answer and `peak` is the most requests answered at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import ServerThread


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 JWT with `claims`, signed with `secret`."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


class SupabaseStub:
    """`with SupabaseStub() as stub:` serves on `stub.url`; `stub.issue(user)` makes tokens."""

    def __init__(self, key: str = "stub-anon-key") -> None:
        self.key = key
        self.secret = secrets.token_bytes(32)
        self.calls = 0
        self.seen: list[dict[str, str | None]] = []
        self.fail_with: int | None = None  # answer every request with this status
        self.delay = 0.0  # seconds before each answer
        self.inflight = 0
        self.peak = 0
        self._accept_expired: set[str] = set()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/auth/v1/user", self._user)])
        self.server: ServerThread | None = None
        self.url = ""

    def issue(self, user_id: str, *, expires_in: float = 3600, accept_expired: bool = False) -> str:
        """A token for `user_id`; `accept_expired` makes the stub accept it past its `exp`."""
        jti = secrets.token_hex(8)
        claims = {
            "sub": user_id,
            "aud": "authenticated",
            "role": "authenticated",
            "exp": int(time.time() + expires_in),
            "jti": jti,
        }
        if accept_expired:
            self._accept_expired.add(jti)
        return make_jwt(self.secret, claims)

    def forged(self, user_id: str) -> str:
        """A well-formed token signed with another secret."""
        return make_jwt(secrets.token_bytes(32), {"sub": user_id, "exp": int(time.time()) + 3600})

    def calls_now(self) -> int:
        with self._lock:
            return self.calls

    async def _user(self, request: Request) -> JSONResponse:
        with self._lock:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(request)
        finally:
            with self._lock:
                self.inflight -= 1

    def _answer(self, request: Request) -> JSONResponse:
        with self._lock:
            self.calls += 1
            self.seen.append(
                {
                    "apikey": request.headers.get("apikey"),
                    "authorization": request.headers.get("authorization"),
                }
            )
        if self.fail_with is not None:
            return JSONResponse({"msg": "stub failure"}, status_code=self.fail_with)
        if request.headers.get("apikey") != self.key:
            return JSONResponse({"message": "Invalid API key"}, status_code=401)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        claims = self._verify(token) if scheme.lower() == "bearer" else None
        if claims is None:
            return _bad_jwt(403, "invalid JWT: unable to parse or verify signature")
        expired = claims.get("exp", 0) <= time.time()
        if expired and claims.get("jti") not in self._accept_expired:
            return _bad_jwt(401, "invalid JWT: token has invalid claims: token is expired")
        return JSONResponse(
            {"id": claims["sub"], "aud": "authenticated", "role": "authenticated", "email": None}
        )

    def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256)
            if not hmac.compare_digest(_unb64(signature), expected.digest()):
                return None
            claims = json.loads(_unb64(payload))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) and isinstance(claims.get("sub"), str) else None

    def __enter__(self) -> SupabaseStub:
        self.server = ServerThread(self.app).start()
        self.url = self.server.url
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()


def _bad_jwt(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "error_code": "bad_jwt", "msg": message}, status)
