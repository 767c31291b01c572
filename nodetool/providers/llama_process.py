"""The embedded model's own process: a supervised `llama-server` child per loaded model.

A native crash in llama.cpp (a signal, an abort, the OOM killer) kills only the child: the server
keeps its sockets, every in-flight request fails at once with the cause in words, and the next
request starts a new child. Three deaths within a minute mark the model unavailable, with the
reason, until the server restarts (so a build that does not fit the CPU is named, not retried).

- The child listens on a Unix socket in a private folder (mode 0700) of the data dir: nothing
  else on the machine can reach it.
- Children are started from one long-lived thread of this process with `PR_SET_PDEATHSIG`, so
  the kernel kills them when the server process dies, even by SIGKILL (no orphans); a normal
  exit stops them first (atexit).
- The last lines of the child's stderr are kept for error messages (and logged at debug level).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import ctypes
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nodetool.errors import ProviderError, ProviderUnavailableError

log = logging.getLogger(__name__)

MAX_DEATHS = 3
DEATH_WINDOW = 60.0
START_TIMEOUT = 120.0
REBUILD_HINT = "rebuild it with `make clean install`"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """What one child runs: the binary, the model, and llama-server's arguments."""

    binary: Path
    model: Path
    run_dir: Path
    context_size: int  # per request (slot)
    parallel: int
    threads: int | None
    profile: str = "?"
    embeddings: bool = False

    def argv(self, socket: Path) -> list[str]:
        argv = [
            str(self.binary),
            "--model", str(self.model),
            "--host", str(socket),
            "--ctx-size", str(self.context_size * self.parallel),
            "--parallel", str(self.parallel),
            "--batch-size", "512",
            "--no-webui",
            "--no-warmup",
            "--log-verbosity", "1",
        ]  # fmt: skip
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.embeddings:
            argv += ["--embeddings", "--pooling", "mean"]
        return argv


def describe_exit(returncode: int, profile: str, stderr_tail: str = "") -> str:
    """The death of a child in words (signal name and what it usually means)."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGILL:
            return (
                f"the local model process died with {name} (illegal instruction): this llama.cpp "
                f"build ({profile}) does not fit this CPU; {REBUILD_HINT}"
            )
        meaning = {
            int(signal.SIGKILL): " (killed: out of memory, or by an operator)",
            int(signal.SIGSEGV): " (segmentation fault in llama.cpp)",
            int(signal.SIGABRT): " (llama.cpp aborted)",
            int(signal.SIGBUS): " (bus error)",
        }.get(number, "")
        return f"the local model process died with {name}{meaning}"
    last = stderr_tail.strip().splitlines()[-1:] if stderr_tail.strip() else []
    detail = f": {last[0][:300]}" if last else ""
    return f"the local model process exited with status {returncode}{detail}"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ModelProcess:
    """Starts, watches and restarts the child for one ChildConfig (shared by the process)."""

    def __init__(self, config: ChildConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: subprocess.Popen[bytes] | None = None  # the child once it answered /health
        self._socket: Path | None = None
        self._deaths: collections.deque[float] = collections.deque()
        self._reaped: set[int] = set()
        self._unavailable: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._lock = threading.Lock()

    # ---- state ------------------------------------------------------------------------------

    @property
    def unavailable(self) -> str | None:
        """Why the model may not be started again (None while it may)."""
        return self._unavailable

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    async def ensure(self) -> Path:
        """The socket of a running, healthy child (starting one when needed)."""
        proc, socket = self._ready, self._socket
        if proc is not None and proc is self._proc and socket is not None and proc.poll() is None:
            return socket
        return await asyncio.wrap_future(_spawner().submit(self._ensure_sync))

    async def death(self, wait: float = 2.0) -> str | None:
        """After a broken connection: the child's death in words, or None if it still runs."""
        proc = self._proc
        if proc is None:
            return None
        deadline = time.monotonic() + wait
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if proc.poll() is None:
            return None
        with self._lock:
            return self._reap(proc)

    def stop(self) -> None:
        """Stop the child (a deliberate exit, not counted as a death)."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            self._reaped.add(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- on the spawner thread ----------------------------------------------------------------

    def _ensure_sync(self) -> Path:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None and self._socket is not None:
                return self._socket
            if proc is not None:
                self._reap(proc)
            if self._unavailable:
                raise ProviderUnavailableError(self._unavailable)
            proc, socket = self._spawn()
        self._wait_ready(proc, socket)
        self._ready = proc
        return socket

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        run_dir = self.config.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        socket = run_dir / f"model-{os.getpid()}-{next(_SOCKETS)}.sock"
        socket.unlink(missing_ok=True)
        self._stderr.clear()
        try:
            proc = subprocess.Popen(
                self.config.argv(socket),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the spawner thread lives on
                start_new_session=True,  # a terminal's Ctrl-C reaches the server, not the child
            )
        except OSError as exc:
            raise ProviderUnavailableError(
                f"cannot start the local model process {self.config.binary.name}: "
                f"{exc.strerror}; {REBUILD_HINT}"
            ) from None
        threading.Thread(
            target=self._drain, args=(proc,), name="nodetool-llama-stderr", daemon=True
        ).start()
        self._proc, self._socket = proc, socket
        log.info("started the local model process (pid %d, %s)", proc.pid, self.config.profile)
        return proc, socket

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr.append(line)
                log.debug("llama-server[%d]: %s", proc.pid, line)

    def _wait_ready(self, proc: subprocess.Popen[bytes], socket: Path) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://llama", timeout=2.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    time.sleep(0.05)  # let the stderr thread read the last words
                    with self._lock:
                        reason = self._reap(proc)
                    reason = reason or "the local model process exited"
                    raise ProviderError(reason, provider="local")
                if socket.exists():
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get("/health").status_code == 200:
                            return
                time.sleep(0.02)
        self.stop()
        raise ProviderError(
            f"the local model process did not become ready within {START_TIMEOUT:.0f} s",
            provider="local",
        )

    def _reap(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Record an exited child once (under the lock); its death in words."""
        code = proc.poll()
        if code is None:
            return None
        reason = describe_exit(code, self.config.profile, self.stderr_tail())
        if proc.pid in self._reaped:
            return reason
        self._reaped.add(proc.pid)
        if self._proc is proc:
            self._proc = None
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > DEATH_WINDOW:
            self._deaths.popleft()
        log.warning("%s", reason)
        if len(self._deaths) >= MAX_DEATHS:
            self._unavailable = (
                f"{reason} ({len(self._deaths)} times within a minute); the local model is "
                "unavailable until the server restarts"
            )
            log.error("%s", self._unavailable)
        return reason


# ---- one process per model, per server process ---------------------------------------------

_PROCESSES: dict[ChildConfig, ModelProcess] = {}
_SOCKETS = itertools.count(1)  # socket names unique within this process
_REGISTRY_LOCK = threading.Lock()
_SPAWNER: ThreadPoolExecutor | None = None


def _spawner() -> ThreadPoolExecutor:
    """The one long-lived thread that starts children (their PDEATHSIG parent)."""
    global _SPAWNER
    with _REGISTRY_LOCK:
        if _SPAWNER is None:
            _SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodetool-llama")
        return _SPAWNER


def shared_process(config: ChildConfig) -> ModelProcess:
    """The process-wide ModelProcess for `config` (created once; stopped at exit)."""
    with _REGISTRY_LOCK:
        process = _PROCESSES.get(config)
        if process is None:
            if not _PROCESSES:
                atexit.register(stop_all)
            process = _PROCESSES[config] = ModelProcess(config)
        return process


def stop_all() -> None:
    """Stop every child of this process."""
    for process in list(_PROCESSES.values()):
        process.stop()
