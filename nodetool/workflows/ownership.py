"""Job ownership: which manager (`host:pid:start`) runs a job, and whether it still lives.

Used by the job manager's startup and periodic sweeps for orphaned jobs (see `jobs.py`).
"""

from __future__ import annotations

import os
import socket
from uuid import uuid4

HEARTBEAT_EVERY = 10.0  # seconds between heartbeats for this manager's unfinished jobs
SWEEP_EVERY = 30.0  # seconds between sweeps for orphaned jobs (crashed workers elsewhere)
STALE_AFTER = 60.0  # a job whose heartbeat is older than this has lost its worker
local_owners: set[str] = set()  # owner ids of this process's open managers


def new_owner_id() -> str:
    """`host:pid:start` naming one manager for the lifetime of its process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """Whether the owner's process may still run: other hosts are unknown (True, their
    heartbeat decides); on this host the pid must exist (and in this process, the manager)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, _ = parts
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return owner in local_owners
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True
