"""`nodetool worker` is closed by default: static auth with a generated token."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.security.support import HealthProbe, LoggedServer, cli_server, output_of, server_env

WARNING = "anyone who can reach this port can use it without a token"


def _worker_env(openai_stub, home, **env: str) -> dict[str, str]:
    values = server_env(openai_stub, home, **env)
    if "AUTH_PROVIDER" not in env:
        values.pop("AUTH_PROVIDER")
    return values


def test_worker_without_auth_provider_requires_the_generated_token(openai_stub, tmp_path) -> None:
    env = _worker_env(openai_stub, tmp_path)
    server = LoggedServer("worker", "--host", "0.0.0.0", env=env).start()
    try:
        token = yaml.safe_load((tmp_path / "config" / "deployment.yaml").read_text())[
            "worker_auth_token"
        ]
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
        with HealthProbe(server.url) as probe, httpx.Client(timeout=5) as client:
            while probe.wants_more():  # an attacker without the token spends nothing
                response = client.post(server.url + "/v1/chat/completions", json=body)
                assert response.status_code == 401
            assert client.get(server.url + "/workflows").status_code == 401
        probe.check()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 200
        assert httpx.get(server.url + "/workflows", headers=headers).status_code == 200
    finally:
        output = output_of(server)
    assert output.count(token) == 1  # printed once, at startup
    assert "auth: static" in output
    assert WARNING not in output


@pytest.mark.parametrize("mode", ["local", "none"])
def test_explicit_open_auth_works_and_warns_on_a_public_bind(openai_stub, tmp_path, mode) -> None:
    env = _worker_env(openai_stub, tmp_path, AUTH_PROVIDER=mode)
    server = LoggedServer("worker", "--host", "0.0.0.0", env=env).start()
    try:
        assert httpx.get(server.url + "/v1/models").status_code == 200
    finally:
        output = output_of(server)
    warnings = [line for line in output.splitlines() if WARNING in line]
    assert len(warnings) == 1 and f"AUTH_PROVIDER={mode}" in warnings[0]


def test_no_warning_on_a_loopback_bind(openai_stub, tmp_path) -> None:
    env = _worker_env(openai_stub, tmp_path, AUTH_PROVIDER="local")
    with cli_server("worker", env=env) as server:
        assert httpx.get(server.url + "/v1/models").status_code == 200
    assert WARNING not in output_of(server)
