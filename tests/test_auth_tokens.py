"""Static token discovery: file created 0600 from the first byte, rotation, env override,
modes none/local never touch the file, `nodetool token [--rotate]`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from nodetool.api.auth.middleware import build_authenticator
from nodetool.api.auth.tokens import (
    DEPLOYMENT_FILE,
    AuthConfigError,
    load_static_token,
    read_file_token,
    rotate_static_token,
)
from nodetool.cli.main import app as cli
from tests.support.auth_app import auth_settings, demo_app
from tests.support.servers import CliServer, free_port, serve_app


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def open_umask() -> Iterator[None]:
    """A umask that grants everything, so 0600 must come from the open() itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_first_token_is_created_0600(tmp_path: Path, open_umask: None) -> None:
    settings = auth_settings(tmp_path, "static")
    path = tmp_path / "config" / DEPLOYMENT_FILE
    assert not path.exists()
    token = load_static_token(settings)
    assert token is not None
    assert _mode(path) == 0o600
    assert token.source == "created" and token.created and token.path == path
    assert len(token.token) >= 43  # 32 random bytes, url-safe base64
    assert set(token.token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert yaml.safe_load(path.read_text()) == {"worker_auth_token": token.token}
    assert _mode(path.parent) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == [DEPLOYMENT_FILE]  # no temp left

    again = load_static_token(settings)
    assert again is not None
    assert (again.token, again.source, again.created) == (token.token, "file", False)


def test_tokens_differ_between_homes(tmp_path: Path) -> None:
    a = load_static_token(auth_settings(tmp_path / "a", "static"))
    b = load_static_token(auth_settings(tmp_path / "b", "static"))
    assert a is not None and b is not None and a.token != b.token


def test_rotation_keeps_other_keys(tmp_path: Path, open_umask: None) -> None:
    settings = auth_settings(tmp_path, "static")
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("region: eu-west\nworker_auth_token: old-token\nreplicas: 3\n")
    path.chmod(0o600)
    assert read_file_token(settings) == "old-token"

    rotated = rotate_static_token(settings)
    assert rotated.source == "rotated" and rotated.token != "old-token"
    assert yaml.safe_load(path.read_text()) == {
        "region": "eu-west",
        "worker_auth_token": rotated.token,
        "replicas": 3,
    }
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [DEPLOYMENT_FILE]
    assert load_static_token(settings).token == rotated.token  # type: ignore[union-attr]


def test_rotation_replaces_a_world_readable_file_with_0600(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, "static")
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("worker_auth_token: old\n")
    path.chmod(0o644)
    rotate_static_token(settings)
    assert _mode(path) == 0o600


def test_file_without_token_gets_one_and_keeps_other_keys(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, "static")
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("region: us\n")
    token = load_static_token(settings)
    assert token is not None and token.created
    assert yaml.safe_load(path.read_text()) == {"region": "us", "worker_auth_token": token.token}
    assert _mode(path) == 0o600


def test_env_token_wins_and_creates_nothing(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, "static", worker_auth_token="from-env")
    token = load_static_token(settings)
    assert token is not None and (token.token, token.source) == ("from-env", "env")
    assert not (tmp_path / "config").exists()


def test_env_token_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("worker_auth_token: from-file\n")
    settings = auth_settings(tmp_path, "static", worker_auth_token="from-env")
    with serve_app(demo_app(settings, "worker")) as server:
        ok = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer from-env"})
        bad = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer from-file"})
    assert ok.status_code == 200
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("worker_auth_token: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "YAML mapping"),
        ("worker_auth_token: 12345\n", "must be a string"),
    ],
)
def test_bad_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(AuthConfigError, match=message) as info:
        load_static_token(auth_settings(tmp_path, "static"))
    assert str(path) in str(info.value)


def test_concurrent_first_use_agrees_on_one_token(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, "static")
    barrier = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        token = load_static_token(settings)
        assert token is not None
        results.append(token.token)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert read_file_token(settings) == results[0]


@pytest.mark.parametrize("mode", ["none", "local"])
def test_none_and_local_never_create_the_file(tmp_path: Path, mode: str) -> None:
    settings = auth_settings(tmp_path, mode)
    assert build_authenticator(settings) is None
    with serve_app(demo_app(settings, "serve")) as server:
        assert httpx.get(server.url + "/v1/models").status_code == 200
    assert not (tmp_path / "config" / DEPLOYMENT_FILE).exists()


def test_static_server_prints_a_new_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = auth_settings(tmp_path, "static")
    demo_app(settings, "worker")
    first = capsys.readouterr()
    token = read_file_token(settings)
    assert token and token in first.err and token not in first.out
    demo_app(settings, "worker")  # a second start reads the file and prints nothing
    assert token not in capsys.readouterr().err


# --- `nodetool token` -----------------------------------------------------------------


def _cli(home: Path, *args: str, **env: str):
    full_env = {"NODETOOL_CONFIG_DIR": str(home / "config"), **env}
    return CliRunner().invoke(cli, ["token", *args], env=full_env)


def test_cli_token_prints_and_creates(tmp_path: Path) -> None:
    first = _cli(tmp_path)
    assert first.exit_code == 0, first.output
    token = first.stdout.strip()
    path = tmp_path / "config" / DEPLOYMENT_FILE
    assert _mode(path) == 0o600
    assert read_file_token(auth_settings(tmp_path, "static")) == token
    assert "mode 0600" in first.stderr
    second = _cli(tmp_path)
    assert second.exit_code == 0 and second.stdout.strip() == token


def test_cli_rotate(tmp_path: Path) -> None:
    old = _cli(tmp_path).stdout.strip()
    rotated = _cli(tmp_path, "--rotate")
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert new and new != old
    assert _cli(tmp_path).stdout.strip() == new
    assert _mode(tmp_path / "config" / DEPLOYMENT_FILE) == 0o600


def test_cli_env_override(tmp_path: Path) -> None:
    shown = _cli(tmp_path, WORKER_AUTH_TOKEN="env-secret", AUTH_PROVIDER="static")
    assert shown.exit_code == 0
    assert shown.stdout.strip() == "env-secret"
    assert not (tmp_path / "config").exists()
    refused = _cli(tmp_path, "--rotate", WORKER_AUTH_TOKEN="env-secret")
    assert refused.exit_code == 1
    assert "WORKER_AUTH_TOKEN" in refused.stderr
    assert not (tmp_path / "config").exists()


def test_cli_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("worker_auth_token: [oops\n")
    result = _cli(tmp_path)
    assert result.exit_code == 1
    assert "not valid YAML" in result.stderr


# --- through the real server CLI -------------------------------------------------------


def test_cli_server_prints_a_new_token_once_and_enforces_it(tmp_path: Path) -> None:
    env = {
        "NODETOOL_CONFIG_DIR": str(tmp_path / "config"),
        "NODETOOL_DATA_DIR": str(tmp_path / "data"),
        "AUTH_PROVIDER": "static",
    }
    server = CliServer("chat-server", env=env).start()
    try:
        token = read_file_token(auth_settings(tmp_path, "static"))
        assert token
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(server.url + "/v1/models").status_code == 401
        assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 200
        assert httpx.get(server.url + f"/ping?api_key={token}").status_code == 200
    finally:
        server.stop()
    output = server.proc.stdout.read() if server.proc.stdout else ""
    assert output.count(token) == 1  # printed once; the ?api_key= access log line is redacted
    assert "/ping?api_key=[REDACTED]" in output
    assert _mode(tmp_path / "config" / DEPLOYMENT_FILE) == 0o600


def test_cli_server_refuses_a_broken_token_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True)
    path.write_text("worker_auth_token: [secret-value\n")
    env = {**os.environ, "NODETOOL_CONFIG_DIR": str(path.parent), "AUTH_PROVIDER": "static"}
    done = subprocess.run(
        [sys.executable, "-m", "nodetool", "worker", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr and str(path) in done.stderr.replace("\n", "")
    assert "secret-value" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
