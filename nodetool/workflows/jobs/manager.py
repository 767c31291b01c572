"""The job manager: the one entry point for starting, following, listing and cancelling jobs.

It validates a job (nothing is stored for a bad graph or bad params), stores it with its
`queued` event, puts it on the queue (Redis Streams when `NODETOOL_REDIS_URL` is set, else
in-process) and returns at once; the `JobRunner` of whichever process takes the entry runs
it. The parts: `queue.py` (the queue), `runner.py` (running attempts), `events.py` (the event
log), `follow.py` (following), `signals.py` (PostgreSQL LISTEN/NOTIFY), `redis_link.py`
(Redis keys and outages). docs/jobs.md describes the design and its failure behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodetool.errors import NotFoundError, WorkflowError
from nodetool.runtime import new_instance_id
from nodetool.types.jobs import (
    TERMINAL_JOB_STATUSES,
    UNFINISHED_JOB_STATUSES,
    JobEvent,
    JobUpdate,
    to_wire,
)
from nodetool.workflows.graph import normalize_workflow
from nodetool.workflows.jobs.events import Hub, Publisher, job_update
from nodetool.workflows.jobs.follow import Follower
from nodetool.workflows.jobs.queue import (
    QUEUE_CHANNEL,
    Delivery,
    JobQueue,
    LocalQueue,
    PostgresQueue,
    RedisQueue,
)
from nodetool.workflows.jobs.redis_link import RedisLink
from nodetool.workflows.jobs.runner import JobRunner
from nodetool.workflows.jobs.signals import Signals
from nodetool.workflows.limits import WorkflowLimits
from nodetool.workflows.runner import prepare
from nodetool.workflows.sandbox import NodeSandbox

if TYPE_CHECKING:
    from nodetool.config import Settings
    from nodetool.providers.registry import ProviderRegistry
    from nodetool.storage.base import Store

log = logging.getLogger("nodetool.jobs")

CANCEL_CHANNEL = "nodetool_job_cancel"  # Signals channel: payload is the job id
CANCEL_WAIT = 3.0  # seconds `cancel` waits for the owner to confirm
CANCEL_REQUESTED = "cancel_requested"  # the status `cancel` answers when unconfirmed


class JobManager:
    """Starts, follows, lists and cancels workflow jobs; runs this process's share."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry | None,
        *,
        instance: str | None = None,
        observe: Callable[[str, float | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.instance = instance or new_instance_id()
        self.observe = observe or (lambda _kind, _duration: None)
        self.redis = (
            RedisLink(settings.redis_url, settings.redis_prefix) if settings.redis_url else None
        )
        self.signals = Signals(settings.database_url)
        self.hub = Hub()
        self.publisher = Publisher(self.hub, self.redis, self.signals)
        self.queue: JobQueue
        if self.redis is not None:
            self.queue = RedisQueue(self.redis, self.instance, settings.job_claim_idle)
        elif self.signals.remote and store.job_leases.supported:
            self.queue = PostgresQueue(
                store.job_leases, self.signals, self.instance, settings.job_claim_idle
            )
        else:
            self.queue = LocalQueue()
        self.runner = JobRunner(
            settings,
            store,
            providers,
            self.queue,
            self.publisher,
            self.instance,
            self.redis.outage if self.redis is not None else None,
            lambda kind, duration: self.observe(kind, duration),
        )
        self.follower = Follower(
            store.jobs, self.hub, self.redis, self.signals, lambda j: j in self.runner.running
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.limits = WorkflowLimits.from_settings(settings)
        self.sandbox = NodeSandbox(self.limits)  # node work off the loop, shared by all jobs
        self.runner.limits, self.runner.sandbox = self.limits, self.sandbox

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover, listen for signals and control messages, start consuming the queue."""
        if self._started:
            return
        self._started = True
        if self.redis is None and not self.signals.remote:
            # embedded (SQLite, no Redis): this process is the only runner; leftovers of a
            # crash cannot run anywhere any more
            count = await self.store.jobs.fail_unfinished("server restarted")
            if count:
                log.warning("marked %d unfinished job(s) failed at startup", count)
        self.signals.on(CANCEL_CHANNEL, self._cancel_signal)
        await self.signals.start((CANCEL_CHANNEL, "nodetool_job_events", QUEUE_CHANNEL))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self.redis.listen_control(self._control)))
        self._tasks.append(asyncio.create_task(self.sandbox.warm()))
        self.runner.start()

    async def aclose(self) -> None:
        """Cancel jobs running here (they end `cancelled`) and close the connections."""
        unstarted = await self.runner.aclose()
        if isinstance(self.queue, LocalQueue):  # nobody else will ever run these
            for job_id in self.queue.drain() + unstarted:
                with contextlib.suppress(Exception):
                    await self._cancel_queued(job_id)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sandbox.aclose()
        await self.signals.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    async def load_workflow_files(self, paths: list[Path]) -> None:
        """Register workflow files as shared workflows (upsert by id); all are checked first."""
        workflows = [read_workflow_file(Path(path)) for path in paths]
        for workflow in workflows:
            await self.store.workflows.upsert(None, workflow)

    def _control(self, message: str) -> None:
        kind, _, job_id = message.partition(":")
        if kind == "cancel":
            self.runner.cancel_local(job_id)

    def _cancel_signal(self, job_id: str) -> None:
        if job_id == "*":
            return
        self.runner.cancel_local(job_id)

    # ---- starting jobs ----------------------------------------------------------------------

    async def resolve_graph(
        self, user_id: str, workflow_id: str | None, graph: Any
    ) -> tuple[str | None, dict[str, Any]]:
        """The graph JSON to run: the stored workflow's (own or shared), or the given one."""
        workflow_id, graph, _ = await self._resolve(user_id, workflow_id, graph)
        return workflow_id, graph

    async def _resolve(
        self, user_id: str, workflow_id: str | None, graph: Any
    ) -> tuple[str | None, dict[str, Any], int]:
        if workflow_id:
            if not isinstance(workflow_id, str):
                raise WorkflowError("workflow_id must be a string", param="workflow_id")
            workflow = await self.store.workflows.get(user_id, workflow_id)
            if workflow is None:
                raise NotFoundError(f"workflow {workflow_id!r} not found", param="workflow_id")
            return workflow_id, workflow.get("graph") or {}, self._max_attempts(workflow)
        if graph is None:
            raise WorkflowError("give a workflow_id or a graph to run", param="workflow_id")
        if isinstance(graph, dict) and "nodes" not in graph and "graph" in graph:
            graph = graph["graph"]  # a whole workflow object
        if not isinstance(graph, dict):
            raise WorkflowError("graph must be an object with nodes and edges", param="graph")
        return None, graph, self.settings.job_max_attempts

    def _max_attempts(self, workflow: Mapping[str, Any]) -> int:
        """The workflow's `max_attempts` (top level or in `settings`), else the default."""
        options = workflow.get("settings") if isinstance(workflow.get("settings"), dict) else {}
        value = workflow.get("max_attempts", options.get("max_attempts"))
        if value is None:
            return self.settings.job_max_attempts
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise WorkflowError("the workflow's max_attempts must be an integer 1..100")
        return value

    async def start_job(
        self,
        user_id: str,
        *,
        workflow_id: str | None = None,
        graph: Any = None,
        params: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate, store and enqueue a job; returns its record (status `queued`) at once."""
        if params is not None and not isinstance(params, Mapping):
            raise WorkflowError("params must be an object of input name -> value", param="params")
        workflow_id, graph_json, max_attempts = await self._resolve(user_id, workflow_id, graph)
        # validation is linear but not free: a thread keeps the event loop answering
        await asyncio.to_thread(prepare, graph_json, params, self.limits)
        record = await self.store.jobs.create(
            user_id,
            workflow_id,
            dict(params or {}),
            thread_id=thread_id,
            graph=None if workflow_id else graph_json,
            max_attempts=max_attempts,
            first_event=_queued_event,
        )
        # a stored job is always enqueued, even when the caller is cancelled meanwhile
        await asyncio.shield(self._enqueue(record))
        return record

    async def _enqueue(self, record: dict[str, Any]) -> None:
        """Announce a job stored with its `queued` event (seq 1), and put it on the queue."""
        queued = {**_queued_event(record), "seq": 1}
        self.hub.publish(record["id"], [queued])
        sent = await self.publisher.to_redis(record["id"], [queued], final=False)
        await self.publisher.stored(record["id"], sent=sent)
        self.observe("queued", None)
        try:
            await self.queue.submit(record["id"])
        except Exception as exc:  # Redis is away: run it here (docs/jobs.md, "Redis down")
            if self.redis is not None:
                self.redis.outage.failed(exc)
            self.runner.launch(Delivery(record["id"], None))

    async def _log_one(self, record: Mapping[str, Any], event: JobUpdate) -> None:
        """Store and send one event while no attempt writes (queued, cancelled unstarted)."""
        wire = to_wire(event)
        seq = await self.store.jobs.add_event(record["id"], wire)
        numbered = {**wire, "seq": seq}
        self.hub.publish(record["id"], [numbered])
        sent = await self.publisher.to_redis(record["id"], [numbered], final=event.terminal)
        await self.publisher.stored(record["id"], sent=sent)

    # ---- reading jobs -----------------------------------------------------------------------

    async def get(self, user_id: str, job_id: str) -> dict[str, Any]:
        """The job record; `NotFoundError` for an unknown job or another user's."""
        record = await self.store.jobs.get(user_id, job_id) if isinstance(job_id, str) else None
        if record is None:
            raise NotFoundError(f"job {job_id!r} not found", param="job_id")
        return record

    async def list(self, user_id: str, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        """The user's jobs from the store (any process's), newest first: (page, next cursor)."""
        return await self.store.jobs.list(user_id, **filters)

    async def unfinished(self, user_id: str) -> list[dict[str, Any]]:
        """The user's queued and running jobs, cluster-wide (at most 200, newest first)."""
        unfinished = ",".join(UNFINISHED_JOB_STATUSES)
        page, _ = await self.store.jobs.list(user_id, status=unfinished, limit=200)
        return page

    async def subscribe(self, user_id: str, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's events so far, then live ones; ends after the final `job_update`."""
        record = await self.get(user_id, job_id)
        async for event in self.follower.follow(record, partial(self.get, user_id, job_id)):
            yield event

    # ---- cancelling -------------------------------------------------------------------------

    async def cancel(self, user_id: str, job_id: str) -> dict[str, Any]:
        """Cancel a job. The answer's status is `cancelled` when the job had not started or
        its runner confirmed, the final status when it ended first, else `cancel_requested`
        (the runner has been told; the job's final event will say)."""
        record = await self.get(user_id, job_id)
        if record["status"] in TERMINAL_JOB_STATUSES:
            return record
        outcome = await self.store.jobs.request_cancel(job_id)
        if outcome == "cancelled":  # it had not started: no runner will start it now
            await self._log_one(
                record,
                job_update(record, "cancelled", attempt=record["attempt"], error="cancelled"),
            )
            self.observe("cancelled", None)
            return await self.get(user_id, job_id)
        if outcome == "requested" and not self.runner.cancel_local(job_id):
            await self.signals.send(CANCEL_CHANNEL, job_id)
            if self.redis is not None:
                await self.redis.publish_control(f"cancel:{job_id}")
        return await self._confirmed(user_id, job_id)

    async def _cancel_queued(self, job_id: str, record: Mapping[str, Any] | None = None) -> str:
        """Flag the cancel in the store; a job that had not started ends here."""
        outcome = await self.store.jobs.request_cancel(job_id)
        if outcome == "cancelled":
            record = record or {"id": job_id, "attempt": 0}
            final = job_update(record, "cancelled", attempt=record["attempt"], error="cancelled")
            await self._log_one(record, final)
            self.observe("cancelled", None)
        return outcome

    async def _confirmed(self, user_id: str, job_id: str) -> dict[str, Any]:
        events = self.subscribe(user_id, job_id)
        try:
            async with asyncio.timeout(CANCEL_WAIT):
                async for _event in events:
                    pass
        except TimeoutError:
            return {**await self.get(user_id, job_id), "status": CANCEL_REQUESTED}
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
        return await self.get(user_id, job_id)

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
        submitting = asyncio.ensure_future(
            self.start_job(user_id, workflow_id=workflow_id, graph=graph, params=params)
        )
        final: JobUpdate | None = None
        try:
            record = await asyncio.shield(submitting)
            async for event in self.subscribe(user_id, record["id"]):
                if type(event) is JobUpdate:
                    final = event
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # (a job that could not start raises here)
                record = await submitting
                await asyncio.shield(self.cancel(user_id, record["id"]))
            raise
        if final is not None and final.status == "completed":
            return final.result or {}
        reason = (final.error or final.status) if final is not None else None
        raise WorkflowError(str(reason or "job ended"), status=400)


def _queued_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """A new job's first event, as stored (its wire dict)."""
    return to_wire(job_update(record, "queued", attempt=0))


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
