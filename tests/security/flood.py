"""Junk-token flood run as its own process (`python -m tests.security.flood URL N SOURCE
THREADS`), so the attacker's threads never compete for the test process's GIL with the
/health prober. Prints the JSON list of the statuses it got."""

from __future__ import annotations

import json
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx


def junk(url: str, count: int, source: str) -> list[int]:
    """`count` requests to `url`/v1/models, each with a new random bearer token."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return [
            client.get(
                url + "/v1/models",
                headers={"Authorization": f"Bearer {secrets.token_urlsafe(24)}"},
            ).status_code
            for _ in range(count)
        ]


def main() -> None:
    url, total, source, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    with ThreadPoolExecutor(threads) as pool:
        parts = [pool.submit(junk, url, total // threads, source) for _ in range(threads)]
        statuses = [status for part in parts for status in part.result()]
    print(json.dumps(statuses))


if __name__ == "__main__":
    main()
