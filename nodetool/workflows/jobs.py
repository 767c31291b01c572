"""The job manager: persisted workflow jobs in background tasks, with an event log for replay.

A job is validated first (nothing is stored for a bad graph or bad params), then stored and
run in a task that outlives any socket. Every event goes to an in-memory log (what live
subscribers replay), to each subscriber's queue, and to a writer task that persists it (the
runner never waits on the database) and then publishes it on the job bus (`fanout.py`). A job
that is not live in this process (finished, or run by another worker sharing the database) is
replayed from the store and followed through the bus (Redis) or by polling the store. A cancel
is stored (a finished job is final) and sent on the bus; without Redis the owner notices it
by checking the store every `CANCEL_CHECK` seconds.

Jobs are owned by the manager that runs them (`host:pid:start`). While a manager runs it
beats for its unfinished jobs every `HEARTBEAT_EVERY` seconds; at start and every
`SWEEP_EVERY` seconds it fails orphaned jobs: unowned ones, ones whose owner process on this
host is gone (so a restart after a crash settles them at once), and ones whose heartbeat is
older than `STALE_AFTER` (crashed workers on other hosts). Live workers' jobs are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodetool.errors import NotFoundError, WorkflowError
from nodetool.workflows.fanout import FINISHED, JobBus, follow_job, is_terminal, make_bus
from nodetool.workflows.graph import normalize_workflow
from nodetool.workflows.limits import WorkflowLimits
from nodetool.workflows.nodes.base import RunContext
from nodetool.workflows.ownership import (
    HEARTBEAT_EVERY,
    STALE_AFTER,
    SWEEP_EVERY,
    local_owners,
    new_owner_id,
    owner_alive,
)
from nodetool.workflows.runner import Prepared, prepare, run_graph
from nodetool.workflows.sandbox import NodeSandbox

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.storage.base import Store

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "JobManager", "is_terminal", "read_workflow_file"]

CANCEL_CHECK = 0.5  # seconds between store checks for cancels from elsewhere (no Redis)
EVENT_BATCH = 500  # events stored per transaction


class _LiveJob:
    """A job running in this process: its event log, subscribers and persistence queue."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.id: str = record["id"]
        self.user_id: str = record["user_id"]
        self.workflow_id: str | None = record.get("workflow_id")
        self.status = "queued"
        self.events: list[dict[str, Any]] = []
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.unsaved: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.outcome: asyncio.Future[tuple[str, Any, str | None, int]] = (
            asyncio.get_running_loop().create_future()
        )
        self.task: asyncio.Task[None] | None = None
        self.finisher: asyncio.Future[None] | None = None
        self.writer: asyncio.Task[None] | None = None

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for queue in self.subscribers:
            queue.put_nowait(event)
        self.unsaved.put_nowait(event)

    def job_update(self, status: str, **extra: Any) -> None:
        self.status = status
        self.emit(
            {
                "type": "job_update",
                "status": status,
                "job_id": self.id,
                "workflow_id": self.workflow_id,
                **extra,
            }
        )


def _coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive text chunks of one node into one stored event (same replayed text);
    of consecutive progress events of one node only the latest is stored."""
    merged: list[dict[str, Any]] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            last is not None
            and event.get("type") == "node_progress" == last.get("type")
            and last.get("node_id") == event.get("node_id")
        ):
            merged[-1] = event
        elif (
            last is not None
            and event.get("type") == "output_update"
            and event.get("output_name") == "chunk"
            and last.get("type") == "output_update"
            and last.get("output_name") == "chunk"
            and last.get("node_id") == event.get("node_id")
            and isinstance(last.get("value"), str)
            and isinstance(event.get("value"), str)
        ):
            merged[-1] = {**last, "value": last["value"] + event["value"]}
        else:
            merged.append(event)
    return merged


class JobManager:
    """Starts, follows, cancels and replays workflow jobs for one process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry | None,
        *,
        bus: JobBus | None = None,
    ):
        self.settings = settings
        self.store = store
        self.providers = providers
        self.bus: JobBus = bus if bus is not None else make_bus(settings)
        self._live: dict[str, _LiveJob] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.owner = new_owner_id()
        local_owners.add(self.owner)
        self._keeper: asyncio.Task[None] | None = None
        self._closed = False
        self.limits = WorkflowLimits.from_settings(settings)
        self.sandbox = NodeSandbox(self.limits)  # node work off the loop, shared by all jobs
        self._warming: asyncio.Task[None] | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Crash recovery: orphaned jobs (e.g. of a killed process) are failed; then the
        heartbeat and periodic sweep start."""
        count = await self._sweep("server restarted")
        if count:
            log.warning("marked %d orphaned job(s) failed at startup", count)
        self._ensure_keeper()
        self._warming = asyncio.create_task(self.sandbox.warm())

    async def _sweep(self, reason: str) -> int:
        return await self.store.jobs.fail_orphaned(
            reason, is_alive=owner_alive, stale_after=STALE_AFTER, keep=tuple(local_owners)
        )

    def _ensure_keeper(self) -> None:
        if self._keeper is None and not self._closed:
            self._keeper = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Heartbeat for this manager's jobs; now and then fail jobs of vanished workers."""
        loop = asyncio.get_running_loop()
        last_sweep = loop.time()
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                if self._live:
                    await self.store.jobs.heartbeat(self.owner)
                if loop.time() - last_sweep >= SWEEP_EVERY:
                    last_sweep = loop.time()
                    count = await self._sweep("worker lost")
                    if count:
                        log.warning("marked %d job(s) of lost workers failed", count)
            except Exception as exc:  # the database may be briefly away: try again later
                log.warning("job heartbeat/sweep failed: %s", exc)

    async def aclose(self) -> None:
        """Cancel running jobs (they are marked cancelled) and wait for them to finish."""
        self._closed = True
        lives = list(self._live.values())
        for live in lives:
            if live.task is not None and not live.task.done():
                live.task.cancel()
        tasks = [live.task for live in lives if live.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(live.outcome for live in lives), return_exceptions=True)
        writers = [live.writer for live in lives if live.writer is not None]
        await asyncio.gather(*writers, return_exceptions=True)
        for task in (self._watcher, self._keeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._keeper = None
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        await self.sandbox.aclose()
        local_owners.discard(self.owner)
        await self.bus.aclose()

    async def load_workflow_files(self, paths: list[Path]) -> None:
        """Register workflow files as shared workflows (upsert by id); all are checked first."""
        workflows = [read_workflow_file(Path(path)) for path in paths]
        for workflow in workflows:
            await self.store.workflows.upsert(None, workflow)

    # ---- starting jobs ----------------------------------------------------------------------

    async def resolve_graph(
        self, user_id: str, workflow_id: str | None, graph: Any
    ) -> tuple[str | None, dict[str, Any]]:
        """The graph JSON to run: the stored workflow's (own or shared), or the given one."""
        if workflow_id:
            if not isinstance(workflow_id, str):
                raise WorkflowError("workflow_id must be a string", param="workflow_id")
            workflow = await self.store.workflows.get(user_id, workflow_id)
            if workflow is None:
                raise NotFoundError(f"workflow {workflow_id!r} not found", param="workflow_id")
            return workflow_id, workflow.get("graph") or {}
        if graph is None:
            raise WorkflowError("give a workflow_id or a graph to run", param="workflow_id")
        if isinstance(graph, dict) and "nodes" not in graph and "graph" in graph:
            graph = graph["graph"]  # a whole workflow object
        if not isinstance(graph, dict):
            raise WorkflowError("graph must be an object with nodes and edges", param="graph")
        return None, graph

    async def start_job(
        self,
        user_id: str,
        *,
        workflow_id: str | None = None,
        graph: Any = None,
        params: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate, persist and start a job; returns its record (status `queued`)."""
        live = await self._start(user_id, workflow_id, graph, params, thread_id)
        return dict(live.record)

    async def _start(
        self,
        user_id: str,
        workflow_id: str | None,
        graph: Any,
        params: Mapping[str, Any] | None,
        thread_id: str | None,
    ) -> _LiveJob:
        if params is not None and not isinstance(params, Mapping):
            raise WorkflowError("params must be an object of input name -> value", param="params")
        workflow_id, graph_json = await self.resolve_graph(user_id, workflow_id, graph)
        # validation is linear but not free: a thread keeps the event loop answering
        prepared = await asyncio.to_thread(prepare, graph_json, params, self.limits)
        await self._listen_for_cancels()
        record = await self.store.jobs.create(
            user_id,
            workflow_id,
            dict(params or {}),
            thread_id=thread_id,
            graph=None if workflow_id else graph_json,
            owner=self.owner,
        )
        self._ensure_keeper()
        live = _LiveJob(record)
        self._live[live.id] = live
        live.job_update("queued")
        live.writer = asyncio.create_task(self._persist(live))
        live.task = asyncio.create_task(self._run(live, prepared))
        live.task.add_done_callback(lambda _: self._after_task(live))
        if not self.bus.remote and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_store_cancels())
        return live

    async def _listen_for_cancels(self) -> None:
        try:
            await self.bus.listen_cancels(self._cancel_local)
        except Exception as exc:  # the job still runs; only remote cancels cannot reach it
            log.warning("cannot listen for job cancel requests: %s", exc)

    def _cancel_local(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is not None and live.task is not None and not live.task.done():
            live.task.cancel()

    async def _watch_store_cancels(self) -> None:
        """Without a bus: cancel local runs whose stored job was finished elsewhere."""
        while self._live:
            await asyncio.sleep(CANCEL_CHECK)
            for live in list(self._live.values()):
                if live.task is None or live.task.done():
                    continue
                try:
                    record = await self.store.jobs.get(live.user_id, live.id)
                except Exception:
                    log.exception("could not check job %s for a cancel", live.id)
                    continue
                if record is not None and record["status"] in FINISHED:
                    live.task.cancel()
        self._watcher = None

    def _after_task(self, live: _LiveJob) -> None:
        # A task cancelled before its first step never ran `_run`'s handlers: finish it here.
        if not live.outcome.done() and live.finisher is None:
            live.finisher = asyncio.ensure_future(
                self._finish(live, "cancelled", None, "cancelled", 499)
            )

    async def _run(self, live: _LiveJob, prepared: Prepared) -> None:
        context = RunContext(
            emit=live.emit,
            job_id=live.id,
            workflow_id=live.workflow_id,
            user_id=live.user_id,
            providers=self.providers,
            settings=self.settings,
            limits=self.limits,
            sandbox=self.sandbox,
        )
        status, results, error, code = "failed", None, None, 500
        try:
            stored = await self.store.jobs.update(live.id, status="running")
            if stored["status"] in FINISHED:  # cancelled elsewhere before it started
                raise asyncio.CancelledError
            live.job_update("running")
            results = await run_graph(prepared, context)
            status, code = "completed", 200
        except asyncio.CancelledError:
            status, error, code = "cancelled", "cancelled", 499
        except WorkflowError as exc:
            error, code = exc.message, exc.status
        except Exception as exc:  # a bug or the store failing: the job fails, the server lives
            log.exception("job %s crashed", live.id)
            error = f"internal error: {exc}"
        live.finisher = asyncio.ensure_future(self._finish(live, status, results, error, code))
        await asyncio.shield(live.finisher)

    async def _finish(
        self, live: _LiveJob, status: str, results: Any, error: str | None, code: int
    ) -> None:
        try:
            stored = await self.store.jobs.update(
                live.id, status=status, results=results, error=error
            )
        except Exception as exc:
            log.exception("could not record the end of job %s", live.id)
            if status == "completed":  # e.g. results the store cannot encode: the job fails
                status, results, code = "failed", None, 500
                error = f"the job's result cannot be stored: {getattr(exc, 'message', exc)}"
                with contextlib.suppress(Exception):
                    await self.store.jobs.update(live.id, status=status, error=error)
        else:
            if stored["status"] != status:  # finished elsewhere first (a cancel): that stands
                status, results, error = stored["status"], stored["results"], stored["error"]
                code = 499 if status == "cancelled" else code
        extra: dict[str, Any] = {"result": results} if status == "completed" else {"error": error}
        live.job_update(status, **extra)
        live.unsaved.put_nowait(None)
        if live.writer is not None:  # the outcome is reported once the event log is complete
            await asyncio.gather(live.writer, return_exceptions=True)
        if not live.outcome.done():
            live.outcome.set_result((status, results, error, code))
        self._live.pop(live.id, None)

    async def _persist(self, live: _LiveJob) -> None:
        """Write the job's events in order, off the runner's path."""
        closed = False
        while not closed:
            batch = [await live.unsaved.get()]
            while not live.unsaved.empty():
                batch.append(live.unsaved.get_nowait())
            closed = batch[-1] is None
            stored: list[dict[str, Any]] = []
            events = _coalesce([e for e in batch if e is not None])
            for start in range(0, len(events), EVENT_BATCH):
                stored.extend(await self._store_events(live, events[start : start + EVENT_BATCH]))
            try:
                await self.bus.publish(live.id, stored)
            except Exception:
                log.exception("could not publish events of job %s", live.id)

    async def _store_events(
        self, live: _LiveJob, events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store events in one transaction (one by one if that fails); the stored ones."""
        try:
            seqs = await self.store.jobs.add_events(live.id, events)
            return [{**event, "seq": seq} for event, seq in zip(events, seqs, strict=True)]
        except Exception:
            stored: list[dict[str, Any]] = []
            for event in events:
                try:
                    seq = await self.store.jobs.add_event(live.id, event)
                except Exception:
                    log.exception("could not store an event of job %s", live.id)
                else:
                    stored.append({**event, "seq": seq})
            return stored

    # ---- following jobs -----------------------------------------------------------------------

    async def get(self, user_id: str, job_id: str) -> dict[str, Any]:
        """The job record; `NotFoundError` for an unknown job or another user's."""
        record = await self.store.jobs.get(user_id, job_id) if isinstance(job_id, str) else None
        if record is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        return record

    def running(self, user_id: str) -> list[dict[str, Any]]:
        """This user's jobs live in this process: `{job_id, workflow_id, status}`."""
        return [
            {"job_id": live.id, "workflow_id": live.workflow_id, "status": live.status}
            for live in self._live.values()
            if live.user_id == user_id and live.status not in FINISHED
        ]

    async def subscribe(self, user_id: str, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """The job's events so far, then live ones; ends after the terminal `job_update`."""
        live = self._live.get(job_id)
        if live is None or live.user_id != user_id:
            async for event in self._follow_stored(user_id, job_id):
                yield event
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        snapshot = list(live.events)
        live.subscribers.add(queue)
        try:
            for event in snapshot:
                yield event
                if is_terminal(event):
                    return
            while True:
                event = await queue.get()
                yield event
                if is_terminal(event):
                    return
        finally:
            live.subscribers.discard(queue)

    async def _follow_stored(self, user_id: str, job_id: str) -> AsyncIterator[dict[str, Any]]:
        record = await self.get(user_id, job_id)
        get_record = partial(self.get, user_id, job_id)
        if not self.bus.remote or record["status"] in FINISHED:
            async for event in follow_job(self.store.jobs, job_id, get_record, None):
                yield event
            return
        async with self.bus.feed(job_id) as feed:
            events = follow_job(self.store.jobs, job_id, get_record, feed, self.bus.idle_check)
            async for event in events:
                yield event

    async def cancel(self, user_id: str, job_id: str) -> dict[str, Any]:
        """Cancel a queued/running job; a finished job is returned unchanged."""
        record = await self.get(user_id, job_id)
        live = self._live.get(job_id)
        if live is not None and live.task is not None and not live.task.done():
            live.task.cancel()
            await asyncio.wait([live.outcome])
            return await self.get(user_id, job_id)
        if record["status"] not in FINISHED:  # not running here (stale, or another process)
            record = await self.store.jobs.update(job_id, status="cancelled", error="cancelled")
            try:
                await self.bus.request_cancel(job_id)  # the owner stops its run
            except Exception:
                log.exception("could not send the cancel request of job %s", job_id)
        return record

    async def run_to_completion(
        self,
        user_id: str,
        *,
        workflow_id: str | None = None,
        graph: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a job and wait: `{output_name: value}`; `WorkflowError` when it fails.

        Cancelling the caller cancels the job.
        """
        live = await self._start(user_id, workflow_id, graph, params, None)
        try:
            status, results, error, code = await asyncio.shield(live.outcome)
        except asyncio.CancelledError:
            if live.task is not None:
                live.task.cancel()
            raise
        if status == "completed":
            return results or {}
        raise WorkflowError(error or status, status=code if code >= 400 and code != 499 else 400)


def read_workflow_file(path: Path) -> dict[str, Any]:
    """A workflow file, normalised; every problem is a `WorkflowError` naming the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read workflow file ({exc.strerror})") from None
    except ValueError as exc:
        raise WorkflowError(f"{path}: not a valid workflow JSON file ({exc})") from None
    try:
        return normalize_workflow(raw)
    except WorkflowError as exc:
        raise WorkflowError(f"{path.name}: {exc.message}", node_id=exc.node_id) from None
