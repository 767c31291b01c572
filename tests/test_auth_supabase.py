"""Supabase mode against a fake GoTrue server on loopback: valid, forged and expired tokens,
the token-hash cache (hits make no upstream call), per-user ids, static-token opt-in,
upstream failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodetool.api.auth.middleware import install_auth
from nodetool.api.auth.supabase import AuthUnavailableError, SupabaseVerifier, jwt_expiry
from nodetool.api.auth.tokens import AuthConfigError
from tests.stubs.supabase_stub import SupabaseStub
from tests.support.auth_app import auth_settings, demo_app, ws_probe
from tests.support.servers import ServerThread, free_port, serve_app

STATIC = "static-token-in-supabase-mode"


@pytest.fixture(scope="module")
def stub() -> Iterator[SupabaseStub]:
    with SupabaseStub() as running:
        yield running


@pytest.fixture(scope="module")
def server(stub: SupabaseStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = auth_settings(
        tmp_path_factory.mktemp("supabase"),
        "supabase",
        supabase_url=stub.url + "/",
        supabase_key=stub.key,
        worker_auth_token=STATIC,
    )
    with serve_app(demo_app(settings, "serve")) as running:
        yield running


def _get(server: ServerThread, token: str, path: str = "/v1/models") -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"})


def _ws(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def test_valid_token_reaches_handler_with_its_user(
    server: ServerThread, stub: SupabaseStub
) -> None:
    token = stub.issue("user-valid")
    resp = _get(server, token)
    assert resp.status_code == 200
    assert resp.json()["user_id"] == "user-valid"
    assert stub.seen[-1] == {"apikey": stub.key, "authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kind", ["forged", "expired", "not-a-jwt"])
def test_invalid_tokens_are_401(server: ServerThread, stub: SupabaseStub, kind: str) -> None:
    token = {
        "forged": stub.forged("user-x"),
        "expired": stub.issue("user-x", expires_in=-60),
        "not-a-jwt": "definitely.not.ajwt",
    }[kind]
    resp = _get(server, token)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert resp.headers["www-authenticate"] == "Bearer"
    outcome, code, _ = ws_probe(_ws(server, "/chat"), {"Authorization": f"Bearer {token}"})
    assert (outcome, code) == ("closed", 1008)


def test_cache_hit_avoids_the_second_call(server: ServerThread, stub: SupabaseStub) -> None:
    token = stub.issue("user-cached")
    before = stub.calls_now()
    assert _get(server, token).json()["user_id"] == "user-cached"
    assert stub.calls_now() == before + 1
    assert _get(server, token, "/api/threads/t").json()["user_id"] == "user-cached"
    outcome, frame, _ = ws_probe(_ws(server, f"/chat?api_key={token}"))
    assert outcome == "frame" and frame["user_id"] == "user-cached"
    assert stub.calls_now() == before + 1


def test_rejections_are_cached_too(server: ServerThread, stub: SupabaseStub) -> None:
    token = stub.forged("user-neg")
    before = stub.calls_now()
    assert _get(server, token).status_code == 401
    assert _get(server, token).status_code == 401
    assert stub.calls_now() == before + 1


def test_malformed_token_never_reaches_supabase(server: ServerThread, stub: SupabaseStub) -> None:
    before = stub.calls_now()
    outcome, code, _ = ws_probe(_ws(server, "/chat?token=bad%0Atoken%20with%20spaces"))
    assert (outcome, code) == ("closed", 1008)
    assert stub.calls_now() == before


def test_two_users_get_their_own_ids(server: ServerThread, stub: SupabaseStub) -> None:
    alice, bob = stub.issue("alice-uuid"), stub.issue("bob-uuid")
    assert _get(server, alice, "/api/threads/t1").json() == {"id": "t1", "user_id": "alice-uuid"}
    assert _get(server, bob, "/api/threads/t1").json() == {"id": "t1", "user_id": "bob-uuid"}
    for token, user in ((alice, "alice-uuid"), (bob, "bob-uuid")):
        outcome, frame, _ = ws_probe(_ws(server, "/predict"), {"Authorization": f"Bearer {token}"})
        assert outcome == "frame" and frame["user_id"] == user


def test_static_token_refused_unless_enabled(server: ServerThread) -> None:
    # the server above has WORKER_AUTH_TOKEN set, but the opt-in flag is off
    assert _get(server, STATIC).status_code == 401


def test_static_token_accepted_when_enabled(stub: SupabaseStub, tmp_path: Path) -> None:
    settings = auth_settings(
        tmp_path,
        "supabase",
        supabase_url=stub.url,
        supabase_key=stub.key,
        worker_auth_token=STATIC,
        supabase_allow_static_token=True,
    )
    with serve_app(demo_app(settings, "worker")) as running:
        before = stub.calls_now()
        resp = _get(running, STATIC)
        assert resp.status_code == 200 and resp.json()["user_id"] == "1"
        assert stub.calls_now() == before
        assert _get(running, stub.issue("carol")).json()["user_id"] == "carol"
        assert _get(running, STATIC + "x").status_code == 401


def test_supabase_mode_without_static_opt_in_creates_no_token_file(
    stub: SupabaseStub, tmp_path: Path
) -> None:
    settings = auth_settings(tmp_path, "supabase", supabase_url=stub.url, supabase_key=stub.key)
    demo_app(settings)
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize(
    "extra",
    [{}, {"supabase_url": "http://127.0.0.1:1"}, {"supabase_key": "k"}],
)
def test_misconfigured_supabase_refuses_to_start(tmp_path: Path, extra: dict) -> None:
    settings = auth_settings(tmp_path, "supabase", **extra)
    with pytest.raises(AuthConfigError, match="SUPABASE_URL and SUPABASE_KEY"):
        install_auth(demo_app(auth_settings(tmp_path, "local")), settings)


def test_unreachable_supabase_is_503_not_401(tmp_path: Path) -> None:
    settings = auth_settings(
        tmp_path,
        "supabase",
        supabase_url=f"http://127.0.0.1:{free_port()}",
        supabase_key="k",
    )
    with serve_app(demo_app(settings, "worker")) as running:
        resp = _get(running, "a.b.c")
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "auth_unavailable"
        assert "www-authenticate" not in resp.headers
        outcome, code, _ = ws_probe(_ws(running, "/chat?token=a.b.c"))
        assert (outcome, code) == ("closed", 1013)
        assert httpx.get(running.url + "/health").status_code == 200


# --- the verifier itself, against the stub ------------------------------------------------


def _verifier(stub: SupabaseStub, **kwargs) -> SupabaseVerifier:
    return SupabaseVerifier(stub.url, stub.key, **kwargs)


async def test_upstream_5xx_is_unavailable_and_not_cached(stub: SupabaseStub) -> None:
    verifier = _verifier(stub)
    token = stub.issue("dave")
    stub.fail_with = 500
    try:
        with pytest.raises(AuthUnavailableError):
            await verifier.verify(token)
    finally:
        stub.fail_with = None
    assert await verifier.verify(token) == "dave"
    await verifier.aclose()


async def test_ttl_zero_disables_the_cache(stub: SupabaseStub) -> None:
    verifier = _verifier(stub, cache_ttl=0)
    token = stub.issue("erin")
    before = stub.calls_now()
    assert await verifier.verify(token) == "erin"
    assert await verifier.verify(token) == "erin"
    assert stub.calls_now() == before + 2
    await verifier.aclose()


@pytest.mark.parametrize(("cache_max", "expected_calls"), [(1, 3), (2, 2)])
async def test_cache_is_lru_bounded(
    stub: SupabaseStub, cache_max: int, expected_calls: int
) -> None:
    verifier = _verifier(stub, cache_max=cache_max)
    a, b = stub.issue("a"), stub.issue("b")
    before = stub.calls_now()
    assert [await verifier.verify(t) for t in (a, b, a)] == ["a", "b", "a"]
    assert stub.calls_now() == before + expected_calls
    assert len(verifier.cache) <= cache_max
    await verifier.aclose()


async def test_cache_never_outlives_the_jwt_exp(stub: SupabaseStub) -> None:
    # the stub vouches for this token although its exp has passed: it must not be cached
    token = stub.issue("frank", expires_in=-5, accept_expired=True)
    verifier = _verifier(stub, cache_ttl=3600)
    before = stub.calls_now()
    assert await verifier.verify(token) == "frank"
    assert await verifier.verify(token) == "frank"
    assert stub.calls_now() == before + 2
    await verifier.aclose()


async def test_concurrent_checks_share_one_call(stub: SupabaseStub) -> None:
    verifier = _verifier(stub)
    token = stub.issue("grace")
    before = stub.calls_now()
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
    assert results == ["grace"] * 20
    assert stub.calls_now() == before + 1
    await verifier.aclose()


async def test_wrong_api_key_rejects(stub: SupabaseStub) -> None:
    verifier = SupabaseVerifier(stub.url, "wrong-key")
    assert await verifier.verify(stub.issue("heidi")) is None
    await verifier.aclose()


def test_jwt_expiry() -> None:
    assert jwt_expiry("a.b") is None
    assert jwt_expiry("x.!!!.y") is None
    assert isinstance(jwt_expiry(SupabaseStub().issue("u")), float)


def test_real_editor_app_keeps_supabase_users_apart(stub: SupabaseStub, tmp_path: Path) -> None:
    from nodetool.api.apps import create_editor_app

    settings = auth_settings(tmp_path, "supabase", supabase_url=stub.url, supabase_key=stub.key)
    alice = {"Authorization": f"Bearer {stub.issue('alice-real')}"}
    bob = {"Authorization": f"Bearer {stub.issue('bob-real')}"}
    with serve_app(create_editor_app(settings)) as running:
        created = httpx.post(running.url + "/api/threads", json={"title": "a"}, headers=alice)
        assert created.status_code == 200, created.text
        thread_id = created.json()["id"]
        assert httpx.get(f"{running.url}/api/threads/{thread_id}", headers=alice).status_code == 200
        assert httpx.get(f"{running.url}/api/threads/{thread_id}", headers=bob).status_code == 404
        listed = httpx.get(running.url + "/api/threads", headers=bob).json()["threads"]
        assert thread_id not in {t["id"] for t in listed}
        assert httpx.get(f"{running.url}/api/threads/{thread_id}").status_code == 401
