"""Limits that hold before authentication: header size and count, read timeouts, and the cap
on connections that have not sent their headers yet. The server enforces auth (static), so
every attacker here is unauthenticated."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.security.support import (
    HealthProbe,
    cli_server,
    raw_socket,
    read_all,
    rss_bytes,
    server_env,
)

MiB = 1024 * 1024
PENDING_CAP = 20
TOKEN = "preauth-token-" + "x" * 20


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory):
    env = server_env(
        openai_stub,
        tmp_path_factory.mktemp("preauth"),
        AUTH_PROVIDER="static",
        WORKER_AUTH_TOKEN=TOKEN,
        NODETOOL_HEADER_TIMEOUT="1",
        NODETOOL_BODY_TIMEOUT="1",
        NODETOOL_MAX_PENDING_CONNECTIONS=str(PENDING_CAP),
    )
    with cli_server("worker", env=env) as srv:
        yield srv


def _huge_header(url: str, total: int, answers: list[bytes]) -> None:
    """Send an unfinished header of up to `total` bytes; record what the server answered."""
    sock = raw_socket(url)
    sent = 0
    chunk = b"a" * 65536
    try:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: ")
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection: the point of the test
    answers.append(read_all(sock, timeout=5))
    sock.close()


def test_twenty_unfinished_20_mib_headers_do_not_grow_memory(server) -> None:
    before = rss_bytes(server.proc.pid)
    answers: list[bytes] = []
    threads = [
        threading.Thread(target=_huge_header, args=(server.url, 20 * MiB, answers))
        for _ in range(20)
    ]
    with HealthProbe(server.url) as probe:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        after = rss_bytes(server.proc.pid)
    probe.check(minimum=1)  # the attack is short: the server cuts every connection at once
    assert len(answers) == 20
    assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), answers[0][:200]
    assert b"headers_too_large" in answers[0]
    assert after - before < 32 * MiB, f"RSS grew {(after - before) / MiB:.1f} MiB"


def test_too_many_header_lines_are_refused(server) -> None:
    sock = raw_socket(server.url)
    sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 500 + b"\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"header lines" in answer


def test_slow_headers_are_timed_out(server) -> None:
    """Slowloris: 10 connections trickling a header byte by byte are cut off after 1 s."""
    socks = [raw_socket(server.url) for _ in range(10)]
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    with HealthProbe(server.url) as probe:
        while len(closed_at) < len(socks) and time.monotonic() - started < 8:
            for index, sock in enumerate(socks):
                if index in closed_at:
                    continue
                try:
                    sock.sendall(b"X")
                except OSError:
                    closed_at[index] = time.monotonic() - started
            time.sleep(0.1)
    probe.check()
    assert len(closed_at) == len(socks), "some slow connections were never timed out"
    assert max(closed_at.values()) < 4


def test_a_stalled_body_is_timed_out(server) -> None:
    """Even an authenticated client cannot hold a request open by stalling its body."""
    socks = [raw_socket(server.url) for _ in range(10)]
    with HealthProbe(server.url) as probe:
        for sock in socks:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
        started = time.monotonic()
        answers = [read_all(sock, timeout=8) for sock in socks]
        elapsed = time.monotonic() - started
    probe.check()
    assert elapsed < 4
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0][:100]
    assert b"request body not received in time" in answers[0]


def test_idle_connections_beyond_the_cap_are_closed(server) -> None:
    """200 connections that never send a byte: only the newest PENDING_CAP stay open, and a
    real client on a fresh connection still gets in at once."""
    socks = [raw_socket(server.url) for _ in range(200)]
    try:
        with HealthProbe(server.url, fresh=True) as probe:
            time.sleep(1.0)
        probe.check()
        open_count = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                open_count += sock.recv(1) != b""
            except BlockingIOError:
                open_count += 1  # nothing to read: still open
            except OSError:
                pass
        assert open_count <= PENDING_CAP
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_normal_request_still_works(server) -> None:
    sock = raw_socket(server.url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    sock.shutdown(socket.SHUT_RDWR)
