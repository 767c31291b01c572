"""Node work off the event loop: a warm pool of sandbox processes and a thread pool.

A node declares where its `compute()` runs (`BaseNode.execution`):

- `"process"`: CPU-bound or fed user text (templates, math). It runs in one of
  `processes` warm worker processes (`sandbox_worker.py`) under a CPU-time limit (the node's,
  or what is left of the job's), an address-space limit and an output-size limit. A node
  over its limit, past `node_timeout`, or whose run is cancelled has its process killed; a
  fresh one takes its place, so the pool stays warm. The server talks to a worker over a
  socket pair with asyncio streams: no thread waits on it, and a cancel simply kills it.
- `"thread"`: blocking I/O. It runs in a thread pool of `threads`, bounded by
  `node_timeout` (a thread cannot be killed: past the timeout the node fails and the thread
  is left to finish).

`offload()` applies the per-job budgets (CPU seconds, output bytes) kept on the run context,
and tells the worker how much of the job's memory budget is left (`memory.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import socket
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from nodetool.errors import WorkflowError
from nodetool.workflows.limits import LimitExceeded, WorkflowLimits, encoded_size, setting_env
from nodetool.workflows.memory import MIB, value_size

if TYPE_CHECKING:
    from nodetool.workflows.nodes.base import BaseNode, RunContext

log = logging.getLogger(__name__)

WORKER_MODULE = "nodetool.workflows.sandbox_worker"


class CpuLimitExceeded(WorkflowError):
    """The kernel stopped a node at its CPU-time allowance (SIGXCPU)."""


class _Worker:
    """One sandbox process (`python -m nodetool.workflows.sandbox_worker`) and the server's
    end of its socket pair, spoken asynchronously (`multiprocessing.connection`'s framing:
    a 4-byte big-endian length, or -1 and an 8-byte one, then a pickle)."""

    def __init__(self, process: subprocess.Popen[bytes], reader: Any, writer: Any) -> None:
        self.process = process
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.ready = False

    @classmethod
    async def start(cls, memory_mb: int) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.to_thread(_popen, theirs.fileno(), memory_mb)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
        return cls(process, reader, writer)

    async def call(self, task: tuple[Any, ...]) -> tuple[Any, ...]:
        """Send one task and wait for its reply; `("dead", exitcode)` if the process died."""
        data = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            if not self.ready:
                await self._read()  # ("ready",)
                self.ready = True
            self.writer.write(_frame_header(len(data)))
            self.writer.write(data)
            await self.writer.drain()
            return await self._read()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.stop()
            return ("dead", await asyncio.to_thread(_wait, self.process))

    async def _read(self) -> Any:
        (size,) = struct.unpack("!i", await self.reader.readexactly(4))
        if size == -1:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return pickle.loads(await self.reader.readexactly(size))

    def kill(self) -> None:
        """Kill the process now (it is reaped in the background)."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.writer.close()
        asyncio.get_running_loop().run_in_executor(None, _wait, self.process)

    def stop(self) -> None:
        """Close the pipe (an idle worker then exits on its own) and kill it to be sure."""
        self.writer.close()
        with contextlib.suppress(OSError):
            self.process.kill()


def _popen(fd: int, memory_mb: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE, str(fd), str(memory_mb)],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )


def _frame_header(size: int) -> bytes:
    if size > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", size)
    return struct.pack("!i", size)


def _wait(process: subprocess.Popen[bytes]) -> int | None:
    try:
        return process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class NodeSandbox:
    """The pools one server (or one CLI run) shares across its workflow jobs."""

    def __init__(self, limits: WorkflowLimits) -> None:
        self.limits = limits
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(limits.processes)
        self.threads = ThreadPoolExecutor(limits.threads, "nodetool-node")
        self._closed = False

    async def _spawn(self) -> _Worker:
        return await _Worker.start(self.limits.node_memory_mb)

    async def warm(self) -> None:
        """Start the worker processes now, so the first nodes do not wait for them."""
        missing = self.limits.processes - len(self._idle)
        started = await asyncio.gather(
            *(self._spawn() for _ in range(missing)), return_exceptions=True
        )
        for worker in started:
            if isinstance(worker, BaseException):
                log.warning("could not start a sandbox worker process: %s", worker)
            else:
                self._keep(worker)

    def _keep(self, worker: _Worker) -> None:
        """Back to the idle pool, unless the pool is full or closed (then it is stopped)."""
        if self._closed or len(self._idle) >= self.limits.processes:
            worker.stop()
        else:
            self._idle.append(worker)

    async def run_process(
        self,
        node_type: type[BaseNode],
        values: dict[str, Any],
        cpu_seconds: float,
        memory_left: int,
    ) -> Any:
        """`compute()` of `node_type` in a worker: `(value, cpu_used, output_bytes, held)`;
        an output over `memory_left` bytes in memory is refused by the worker."""
        if self._closed:
            raise WorkflowError("the server is shutting down", status=503)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            where = (node_type.__module__, node_type.__qualname__)
            task = (where, values, self.limits, cpu_seconds, memory_left)
            try:
                reply = await asyncio.wait_for(worker.call(task), self.limits.node_timeout)
            except TimeoutError:
                worker.kill()
                raise LimitExceeded(
                    f"the node ran longer than {self.limits.node_timeout:g} s",
                    "node_timeout",
                    f"{self.limits.node_timeout:g} s",
                ) from None
            except BaseException:  # cancelled (or unpicklable): stop the computation now
                worker.kill()
                raise
            if reply[0] == "dead":
                raise _died(reply[1], cpu_seconds)
            self._keep(worker)
        if reply[0] == "error":
            raise ValueError(reply[1])
        return reply[1], reply[2], reply[3], reply[4]

    async def run_thread(
        self, node: BaseNode, values: dict[str, Any], memory_left: int
    ) -> tuple[Any, int, int]:
        """`compute()` in the thread pool: `(value, output_bytes, held)`."""
        loop = asyncio.get_running_loop()
        call = partial(_compute_checked, node, values, self.limits, memory_left)
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self.threads, call), self.limits.node_timeout
            )
        except TimeoutError:
            raise LimitExceeded(
                f"the node ran longer than {self.limits.node_timeout:g} s",
                "node_timeout",
                f"{self.limits.node_timeout:g} s",
            ) from None

    async def aclose(self) -> None:
        """Stop every worker process and the pools."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()
        if idle:  # reap them (no zombies left behind)
            await asyncio.to_thread(_reap, idle)
        self.threads.shutdown(wait=False, cancel_futures=True)


def _reap(workers: list[_Worker]) -> None:
    for worker in workers:
        _wait(worker.process)


def _compute_checked(
    node: BaseNode, values: dict[str, Any], limits: WorkflowLimits, memory_left: int
) -> Any:
    value = node.compute(values, limits)
    return value, encoded_size(value, limits.node_output_bytes), value_size(value, memory_left)


def _died(exitcode: int | None, cpu_seconds: float) -> WorkflowError:
    if exitcode == -signal.SIGXCPU:
        return CpuLimitExceeded(
            str(
                LimitExceeded(
                    f"the node used more than {cpu_seconds:g} s of CPU time",
                    "node_cpu_seconds",
                    f"{cpu_seconds:g} s",
                )
            )
        )
    log.warning("a sandbox worker process died with exit code %s", exitcode)
    return WorkflowError(
        f"the node's worker process died (exit code {exitcode}); it may have exceeded its "
        f"memory limit ({setting_env('node_memory_mb')})"
    )


async def offload(run: RunContext, node: BaseNode, values: dict[str, Any]) -> Any:
    """Run `node.compute(values)` where its `execution` says, within the job's budgets."""
    sandbox, limits = run.sandbox, run.limits
    if sandbox is None or limits is None:
        raise RuntimeError("the run has no sandbox")
    memory_left = run.memory.left() if run.memory else limits.job_memory_mb * MIB
    if node.execution == "thread":
        value, size, held = await sandbox.run_thread(node, values, memory_left)
    else:
        remaining = limits.job_cpu_seconds - run.cpu_used
        if remaining <= 0:
            raise LimitExceeded(
                f"the job used {run.cpu_used:.3g} s of CPU time",
                "job_cpu_seconds",
                f"{limits.job_cpu_seconds:g} s",
            )
        allowance = min(limits.node_cpu_seconds, remaining)
        try:
            value, cpu, size, held = await sandbox.run_process(
                type(node), values, allowance, memory_left
            )
        except CpuLimitExceeded:
            if allowance < limits.node_cpu_seconds:
                run.cpu_used = limits.job_cpu_seconds
                raise LimitExceeded(
                    "the job ran out of CPU time",
                    "job_cpu_seconds",
                    f"{limits.job_cpu_seconds:g} s",
                ) from None
            raise
        run.cpu_used += cpu
    run.output_bytes += size
    if run.output_bytes > limits.job_output_bytes:
        raise LimitExceeded(
            f"the job's node outputs total {run.output_bytes} bytes",
            "job_output_bytes",
            limits.job_output_bytes,
        )
    if run.memory is not None:  # charged when the runner passes it on: measured once
        run.memory.note(value, held)
    return value
