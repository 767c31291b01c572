"""Supabase JWT verification through `GET {SUPABASE_URL}/auth/v1/user`, with LRU/TTL caches.

Results are cached by the token's SHA-256 (never the token itself): valid tokens for
`AUTH_CACHE_TTL` seconds, bounded by the JWT's own `exp` claim; invalid ones in a separate
negative cache for `AUTH_NEGATIVE_CACHE_TTL` seconds, so junk cannot evict real users. Each
cache holds at most `AUTH_CACHE_MAX` entries. Concurrent checks of one uncached token share a
single upstream call; at most `AUTH_MAX_CONCURRENCY` calls run at once; and each client
address may cause at most `AUTH_RATE_PER_CLIENT` upstream checks per second (burst
`AUTH_RATE_BURST`), beyond which it gets 429s. One pooled `httpx.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections import OrderedDict
from typing import Any

import httpx

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")
_MISS = object()


class AuthUnavailableError(Exception):
    """The auth service could not give an answer (unreachable, 5xx, 429, odd reply)."""


class AuthRateLimitedError(Exception):
    """This client caused too many upstream token checks; retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many authentication attempts")
        self.retry_after = retry_after


class ClientRateLimiter:
    """Token buckets per client key (`rate` per second, `burst` deep), LRU-bounded."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when `key` may go on (a token is taken), else the seconds until it may."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0.0


class TTLCache:
    """A small LRU map whose entries also expire (monotonic clock)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[bytes, tuple[float, str | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes, now: float) -> Any:
        """The cached value, or `_MISS` when absent or expired."""
        entry = self._data.get(key)
        if entry is None:
            return _MISS
        if entry[0] <= now:
            del self._data[key]
            return _MISS
        self._data.move_to_end(key)
        return entry[1]

    def put(self, key: bytes, value: str | None, expires_at: float) -> None:
        self._data[key] = (expires_at, value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


def jwt_expiry(token: str) -> float | None:
    """The unverified `exp` claim (epoch seconds) of a JWT, None when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class SupabaseVerifier:
    """Turn a Supabase access token into its user id (None when the token is not valid)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        cache_ttl: float = 60.0,
        cache_max: int = 2000,
        timeout: float = 10.0,
        negative_ttl: float = 300.0,
        max_concurrency: int = 8,
        rate_per_client: float = 5.0,
        rate_burst: int = 20,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/auth/v1/user"
        self._key = key
        self.cache_ttl = cache_ttl
        self.cache = TTLCache(cache_max)
        self.negative_ttl = negative_ttl
        self.negative = TTLCache(cache_max)
        self.limiter = ClientRateLimiter(rate_per_client, rate_burst)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._inflight: dict[bytes, asyncio.Future[str | None]] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._client

    async def verify(self, token: str, client: str | None = None) -> str | None:
        """The user id for `token`, or None. Raises AuthUnavailableError if Supabase fails,
        AuthRateLimitedError when `client` caused too many upstream checks."""
        if not _TOKEN_CHARS.fullmatch(token):
            return None
        key = hashlib.sha256(token.encode("ascii")).digest()
        now = time.monotonic()
        cached = self.cache.get(key, now)
        if cached is not _MISS:
            return cached
        if self.negative.get(key, now) is not _MISS:
            return None
        pending = self._inflight.get(key)
        if pending is None:
            wait = self.limiter.take(client or "", now)
            if wait > 0:
                raise AuthRateLimitedError(wait)
            pending = asyncio.ensure_future(self._check(key, token))
            self._inflight[key] = pending
            pending.add_done_callback(lambda fut: self._settled(key, fut))
        return await asyncio.shield(pending)

    def _settled(self, key: bytes, fut: asyncio.Future[str | None]) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled():
            fut.exception()  # retrieved here so an unawaited failure is never reported twice

    async def _check(self, key: bytes, token: str) -> str | None:
        async with self._slots:
            user_id = await self._fetch(token)
        if user_id is None:
            if self.negative_ttl > 0:
                self.negative.put(key, None, time.monotonic() + self.negative_ttl)
            return None
        if self.cache_ttl > 0:
            now = time.monotonic()
            lifetime = self.cache_ttl
            exp = jwt_expiry(token)
            if exp is not None:
                lifetime = min(lifetime, exp - time.time())
            if lifetime > 0:
                self.cache.put(key, user_id, now + lifetime)
        return user_id

    async def _fetch(self, token: str) -> str | None:
        headers = {"apikey": self._key, "Authorization": f"Bearer {token}"}
        try:
            resp = await self._http().get(self.endpoint, headers=headers)
        except httpx.HTTPError as exc:
            why = type(exc).__name__
            raise AuthUnavailableError(f"cannot reach Supabase auth: {why}") from None
        if resp.status_code == 200:
            try:
                user_id = resp.json().get("id")
            except (ValueError, AttributeError):
                user_id = None
            if not isinstance(user_id, str) or not user_id:
                raise AuthUnavailableError("Supabase auth returned a user without an id")
            return user_id
        if 400 <= resp.status_code < 500 and resp.status_code != 429:
            return None
        raise AuthUnavailableError(f"Supabase auth answered HTTP {resp.status_code}")

    async def aclose(self) -> None:
        """Close the pooled client (a new one is made if the app starts again)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
