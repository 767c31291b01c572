"""The job runner: consumes the queue and runs up to `max_concurrent_jobs` jobs at a time.

Each delivery starts an attempt in the store (`begin_attempt`: attempt + 1, owner = this
process's instance id). An attempt past the job's `max_attempts` (its earlier workers died)
fails the job with a stored final event instead of running it. Every `job_update` frame of an
attempt carries `attempt`. While jobs run, the runner keeps their queue entries fresh; an
entry another worker claimed means this run was superseded: it stops without a final event
(the store refuses a superseded attempt's writes anyway). Abandoned entries of other workers
are claimed and re-run from the start.

Cancels arrive by any path: `cancel_local` (this process), a control message, a database
signal, or the store's cancel flag (checked every `CANCEL_CHECK` seconds while jobs run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetool.errors import NodetoolError, WorkflowError
from nodetool.storage.codec import JsonText, dumps_off_loop
from nodetool.storage.large_json import JsonTooLong
from nodetool.workflows.jobs.events import EventLog, Publisher, job_update
from nodetool.workflows.limits import LimitExceeded, WorkflowLimits
from nodetool.workflows.nodes.base import RunContext
from nodetool.workflows.runner import prepare, run_graph

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.storage.base import Store
    from nodetool.workflows.jobs.queue import Delivery, JobQueue
    from nodetool.workflows.jobs.redis_link import Outage
    from nodetool.workflows.sandbox import NodeSandbox

log = logging.getLogger("nodetool.jobs")

CANCEL_CHECK = 2.0  # seconds between store checks for cancel flags of running jobs
Observer = Callable[[str, float | None], None]  # (completed|failed|..., duration seconds)


@dataclass
class Running:
    job_id: str
    entry_id: str | None
    task: asyncio.Task[None] | None = None
    attempt: int = 0
    superseded: bool = False
    acked: bool = False  # its entry left the queue (the run ended)
    started: float = field(default_factory=time.monotonic)


class JobRunner:
    """Runs this process's share of the queue."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry | None,
        queue: JobQueue,
        publisher: Publisher,
        instance: str,
        outage: Outage | None,
        observe: Observer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.queue = queue
        self.publisher = publisher
        self.instance = instance
        self.outage = outage
        self.observe = observe
        self.limit = settings.max_concurrent_jobs
        self.running: dict[str, Running] = {}
        self._slots = asyncio.Semaphore(self.limit)
        self._loops: list[asyncio.Task[None]] = []
        self._keep_every = min(1.0, settings.job_claim_idle / 4)
        self.limits: WorkflowLimits | None = None  # set by the manager (shared by all jobs)
        self.sandbox: NodeSandbox | None = None

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._consume()),
            asyncio.create_task(self._maintain()),
        ]

    async def aclose(self) -> list[str]:
        """Stop taking jobs and cancel the runs (they end `cancelled`); returns the jobs
        taken but not started (still `queued` in the store)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        runs = list(self.running.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)
        return [run.job_id for run in runs if run.attempt == 0]

    # ---- queue loops ----------------------------------------------------------------------

    async def _redis_call(self, call: Any) -> Any:
        """Await a queue call; on failure note the outage, back off and return None."""
        started = time.monotonic()
        try:
            result = await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.outage is None:
                log.exception("job queue call failed")
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(self.outage.failed(exc))
            return None
        if self.outage is not None:
            self.outage.ok(started)
        return result

    async def _consume(self) -> None:
        while True:
            await self._slots.acquire()
            self._slots.release()
            free = self.limit - len(self.running)
            if free <= 0:
                await asyncio.sleep(0.05)
                continue
            taken = await self._redis_call(self.queue.take(free, block=2.0))
            for delivery in taken or ():
                self.launch(delivery)

    async def _maintain(self) -> None:
        """Keep our entries, claim abandoned ones, and honour stored cancel flags."""
        loop = asyncio.get_running_loop()
        last_cancel_check = loop.time()
        while True:
            await asyncio.sleep(self._keep_every)
            entries = {r.entry_id: r for r in self.running.values() if r.entry_id}
            if entries:
                mine = await self._redis_call(self.queue.keep(list(entries)))
                for entry_id, run in entries.items():
                    if mine is None or entry_id in mine or run.superseded or run.acked:
                        continue  # (an entry acked meanwhile left the queue: its run ended)
                    if self.running.get(run.job_id) is run:
                        self._supersede(run)
            free = self.limit - len(self.running)
            if free > 0:
                for delivery in await self._redis_call(self.queue.claim(free)) or ():
                    log.warning("claimed job %s from a lost worker", delivery.job_id)
                    self.launch(delivery)
            if self.running and loop.time() - last_cancel_check >= CANCEL_CHECK:
                last_cancel_check = loop.time()
                try:
                    for job_id in await self.store.jobs.cancels_for(self.instance):
                        self.cancel_local(job_id)
                except Exception as exc:
                    log.warning("could not check for job cancels: %s", exc)

    def _supersede(self, run: Running) -> None:
        log.warning("job %s was claimed by another worker; stopping this run", run.job_id)
        run.superseded = True
        if run.task is not None:
            run.task.cancel()

    def launch(self, delivery: Delivery) -> None:
        if not delivery.job_id or delivery.job_id in self.running:
            if not delivery.job_id:
                asyncio.ensure_future(self._redis_call(self.queue.ack(delivery.entry_id)))
            return
        run = Running(delivery.job_id, delivery.entry_id)
        self.running[run.job_id] = run
        run.task = asyncio.create_task(self._run(run, delivery.claimed))
        run.task.add_done_callback(lambda _t: self.running.pop(run.job_id, None))

    def cancel_local(self, job_id: str) -> bool:
        """Stop the job if it runs here; True when it did."""
        run = self.running.get(job_id)
        if run is None or run.task is None or run.task.done():
            return False
        run.task.cancel()
        return True

    # ---- one attempt ----------------------------------------------------------------------

    async def _run(self, run: Running, claimed: bool) -> None:
        async with self._slots:
            begin = self.store.jobs.begin_attempt(run.job_id, self.instance)
            starting = asyncio.ensure_future(begin)
            cancelled = False
            try:
                try:
                    begun = await asyncio.shield(starting)
                except asyncio.CancelledError:  # the attempt begins anyway: it ends cancelled
                    cancelled = True
                    begun = await starting
            except Exception:
                log.exception("could not start job %s; it stays queued", run.job_id)
                return
            if begun is None:  # finished meanwhile (e.g. cancelled while queued)
                if run.entry_id is not None:
                    run.acked = True
                    await self._redis_call(self.queue.ack(run.entry_id))
                return
            record, run.attempt = begun.record, begun.record["attempt"]
            self.observe("retried" if run.attempt > 1 else "started", None)
            last_seq = await self.publisher.last_seq(run.job_id, begun.last_seq)
            events = EventLog(self.store.jobs, self.publisher, run.job_id, last_seq)
            cancelled = cancelled or begun.cancel_requested
            outcome = await self._attempt(run, record, cancelled, events)
            # the ending completes even if this task is cancelled again (shutdown)
            await asyncio.shield(self._end(run, record, events, outcome))

    async def _end(
        self,
        run: Running,
        record: dict[str, Any],
        events: EventLog,
        outcome: tuple[str, Any, str | None] | None,
    ) -> None:
        if outcome is not None:
            await self._finish(run, record, events, *outcome)
        if run.superseded:
            self.observe("lost", None)
        await events.close()
        if not run.superseded and run.entry_id is not None:
            run.acked = True
            await self._redis_call(self.queue.ack(run.entry_id))

    async def _attempt(
        self, run: Running, record: dict[str, Any], cancelled: bool, events: EventLog
    ) -> tuple[str, Any, str | None] | None:
        """Run the graph; (status, results, error), or None when superseded."""
        limit = record["max_attempts"]
        if run.attempt > limit:
            return "failed", None, f"worker lost; gave up after {limit} attempt(s)"
        if cancelled:
            return "cancelled", None, "cancelled"
        events.emit(job_update(record, "running", attempt=run.attempt))
        context = RunContext(
            emit=events.emit,
            job_id=run.job_id,
            workflow_id=record.get("workflow_id"),
            user_id=record["user_id"],
            providers=self.providers,
            settings=self.settings,
            limits=self.limits,
            sandbox=self.sandbox,
        )
        try:
            graph = await self._graph(record)
            prepared = await asyncio.to_thread(prepare, graph, record["params"], self.limits)
            return "completed", await run_graph(prepared, context), None
        except asyncio.CancelledError:
            if run.superseded:
                return None
            return "cancelled", None, "cancelled"
        except WorkflowError as exc:
            return "failed", None, exc.message
        except Exception as exc:  # a bug or the store failing: the job fails, the server lives
            log.exception("job %s crashed", run.job_id)
            return "failed", None, f"internal error: {exc}"

    async def _graph(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("graph"):
            return record["graph"]
        workflow = await self.store.workflows.get(record["user_id"], record["workflow_id"] or "")
        if workflow is None:
            raise WorkflowError(f"workflow {record['workflow_id']!r} no longer exists")
        return workflow.get("graph") or {}

    async def _encoded(self, results: Any) -> tuple[str, JsonText | None, str | None]:
        """(`completed`, the results as the JSON to store, None), or (`failed`, None, why):
        results over `job_result_bytes` or not storable as JSON are not stored at all."""
        limits = self.limits or WorkflowLimits.from_settings(self.settings)
        limit = limits.job_result_bytes
        try:
            return "completed", JsonText(await dumps_off_loop(results, limit), results), None
        except JsonTooLong:
            what = "the job's results are too large to store"
            return "failed", None, str(LimitExceeded(what, "job_result_bytes", limit))
        except NodetoolError as exc:
            return "failed", None, f"the job's result cannot be stored: {exc.message}"

    async def _finish(
        self,
        run: Running,
        record: dict[str, Any],
        events: EventLog,
        status: str,
        results: Any,
        error: str | None,
    ) -> None:
        await events.flush()  # a finished job's stored events are complete but for the last
        encoded = None
        if status == "completed":
            status, encoded, error = await self._encoded(results)
            results = results if status == "completed" else None
        try:
            stored = await asyncio.shield(
                self.store.jobs.update(
                    run.job_id, status=status, results=encoded, error=error, attempt=run.attempt
                )
            )
        except Exception as exc:
            log.exception("could not record the end of job %s", run.job_id)
            if status == "completed":  # e.g. results the store cannot encode: the job fails
                status, results = "failed", None
                error = f"the job's result cannot be stored: {getattr(exc, 'message', exc)}"
                with contextlib.suppress(Exception):
                    await self.store.jobs.update(
                        run.job_id, status=status, error=error, attempt=run.attempt
                    )
            stored = {**record, "status": status, "results": results, "error": error}
        if stored["attempt"] != run.attempt:  # another worker took over: not ours to end
            run.superseded = True
            return
        if stored["status"] != status:  # cancelled elsewhere first: that stands
            status, results, error = stored["status"], stored["results"], stored["error"]
        extra: dict[str, Any] = {"result": results} if status == "completed" else {"error": error}
        events.emit(job_update(record, status, attempt=run.attempt, **extra))
        self.observe(status, time.monotonic() - run.started)
