"""Supabase mode: junk bearer tokens cannot starve real users (negative cache, bounded
concurrency towards Supabase, a per-client rate limit)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from tests.security.support import HealthProbe, cli_server, server_env
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.servers import REPO

ATTACKER = "127.0.0.2"  # another loopback address: another client for the server
RATE, BURST, CONCURRENCY = 5, 20, 4


@pytest.fixture(scope="module")
def supabase():
    with SupabaseStub() as stub:
        stub.delay = 0.05
        yield stub


@pytest.fixture(scope="module")
def server(openai_stub, supabase, tmp_path_factory):
    env = server_env(
        openai_stub,
        tmp_path_factory.mktemp("supabase-limits"),
        AUTH_PROVIDER="supabase",
        SUPABASE_URL=supabase.url,
        SUPABASE_KEY=supabase.key,
        AUTH_RATE_PER_CLIENT=str(RATE),
        AUTH_RATE_BURST=str(BURST),
        AUTH_MAX_CONCURRENCY=str(CONCURRENCY),
    )
    with cli_server("chat-server", env=env) as srv:
        yield srv


def _flood(url: str, total: int, threads: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.security.flood", url, str(total), ATTACKER]
    return subprocess.Popen([*command, str(threads)], stdout=subprocess.PIPE, text=True, cwd=REPO)


def test_600_junk_tokens_do_not_delay_a_real_user(server, supabase) -> None:
    calls_before = supabase.calls_now()
    supabase.peak = 0
    real = supabase.issue("real-user")
    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        flood = _flood(server.url, 600, 2)
        time.sleep(0.5)  # the flood is under way
        t0 = time.perf_counter()
        response = httpx.get(
            server.url + "/v1/models", headers={"Authorization": f"Bearer {real}"}, timeout=30
        )
        real_latency = time.perf_counter() - t0
        out, _ = flood.communicate(timeout=120)
        statuses = json.loads(out)
        duration = time.monotonic() - started
    probe.check()
    assert response.status_code == 200
    assert real_latency < 2.0, f"the real user waited {real_latency:.2f} s"  # was 16.8 s
    assert len(statuses) == 600
    assert set(statuses) <= {401, 429}, set(statuses)
    assert statuses.count(429) > 400  # most junk never reached Supabase
    upstream = supabase.calls_now() - calls_before
    assert upstream <= BURST + RATE * duration + 2, f"{upstream} Supabase calls in {duration:.1f} s"
    assert supabase.peak <= CONCURRENCY


def test_a_rejected_token_is_answered_from_the_negative_cache(server, supabase) -> None:
    forged = supabase.forged("someone")
    headers = {"Authorization": f"Bearer {forged}"}
    assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 401
    calls = supabase.calls_now()
    for _ in range(50):
        assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 401
    assert supabase.calls_now() == calls


def test_rate_limited_clients_get_429_with_retry_after(server) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(transport=transport, timeout=30) as client:
        answers = [
            client.get(
                server.url + "/v1/models",
                headers={"Authorization": f"Bearer {secrets.token_urlsafe(24)}"},
            )
            for _ in range(BURST + 10)
        ]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "the per-client rate limit never applied"
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "auth_rate_limited"
