"""A persisted chat turn, independent of the transport (the `/chat` WebSocket drives it).

One turn: ensure the thread (a client-given id is honoured for the same user only), save the
user message, load the thread's recent history, run the engine's turn (or a workflow) and
persist every message it produces; `MessageEvent.record` carries the stored record. A stopped
turn is cancelled by its caller, which then calls `finish_stopped()` to save the partial text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodetool.chat.engine import ClientToolRunner, TurnRequest
from nodetool.errors import WorkflowError
from nodetool.storage.ids import new_id
from nodetool.types.events import ChatEvent, Done, MessageEvent, TextDelta
from nodetool.types.jobs import JobUpdate, is_terminal
from nodetool.types.messages import Message, ToolCall, ToolSpec
from nodetool.workflows.graph import Graph
from nodetool.workflows.params import chat_text_inputs

if TYPE_CHECKING:
    from nodetool.chat.engine import ChatEngine
    from nodetool.config import Settings
    from nodetool.storage.base import Record, Store
    from nodetool.workflows.jobs import JobManager

log = logging.getLogger("nodetool.chat")

TITLE_LENGTH = 60


@dataclass
class TurnInput:
    """What a client asked for in one chat message."""

    content: str | list[dict[str, Any]] | None
    thread_id: str | None = None
    model: str | None = None
    provider: str | None = None
    tools: list[str] | None = None  # server tools; None: the server's --tools
    client_tools: list[ToolSpec] = field(default_factory=list)
    client_tool_runner: ClientToolRunner | None = None
    workflow_id: str | None = None
    graph: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    @property
    def is_workflow(self) -> bool:
        return self.workflow_id is not None or self.graph is not None

    def text(self) -> str:
        return Message(role="user", content=self.content).text()


class ChatSession:
    """Starts persisted turns for one user."""

    def __init__(
        self,
        engine: ChatEngine,
        store: Store,
        settings: Settings,
        user_id: str,
        jobs: JobManager | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.user_id = user_id
        self.jobs = jobs

    def start(self, turn: TurnInput) -> PersistedTurn:
        """A turn on the client's thread id, or on a new thread id chosen now."""
        return PersistedTurn(self, turn, turn.thread_id or new_id())


class PersistedTurn:
    """One turn: iterate `events()`; after cancelling it, await `finish_stopped()`."""

    def __init__(self, session: ChatSession, turn: TurnInput, thread_id: str) -> None:
        self.session = session
        self.turn = turn
        self.thread_id = thread_id
        self._partial: list[str] = []  # streamed text not yet part of a saved message
        self._route: tuple[str | None, str | None] = (None, None)  # (model, provider)
        self._pending: set[asyncio.Future[Any]] = set()
        self._job_id: str | None = None

    # ---- persistence ----------------------------------------------------------------------

    async def _persist(self, work: Awaitable[Any]) -> Any:
        """Run a store write to completion even if the turn is cancelled meanwhile."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def _save(self, message: Message, model: str | None, provider: str | None) -> Record:
        data = message.model_dump(mode="json", exclude_none=True)
        data.update(model=model, provider=provider, workflow_id=self.turn.workflow_id)
        return await self._persist(
            self.session.store.messages.add(self.session.user_id, self.thread_id, data)
        )

    async def finish_stopped(self) -> Record | None:
        """After cancellation: finish pending writes, cancel a running workflow job and save
        the partial answer. Returns the saved partial message record, if any."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self._cancel_job()
        text = "".join(self._partial)
        self._partial.clear()
        if not text:
            return None
        model, provider = self._route
        try:
            return await self._save(Message(role="assistant", content=text), model, provider)
        except Exception:
            log.exception("could not save the partial answer of a stopped turn")
            return None

    async def _cancel_job(self) -> None:
        if self._job_id is None or self.session.jobs is None:
            return
        job_id, self._job_id = self._job_id, None
        try:
            await self.session.jobs.cancel(self.session.user_id, job_id)
        except Exception as exc:  # the job may have finished meanwhile
            log.debug("cancel of job %s after stop: %s", job_id, exc)

    # ---- the turn ---------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The turn's events (ending with Done); errors propagate as exceptions.

        The request is checked (model route, tools, workflow) before the user message is
        saved, so a rejected turn leaves only its (possibly new, empty) thread behind.
        """
        session, turn = self.session, self.turn
        title = turn.text()[:TITLE_LENGTH] or None
        await self._persist(session.store.threads.ensure(session.user_id, self.thread_id, title))
        if turn.is_workflow:
            job = await self._start_job()
            try:
                await self._save_user()
            except Exception:
                await self._cancel_job()
                raise
            async for event in self._follow_job(job):
                yield event
            return
        request = TurnRequest(
            messages=[],
            model=turn.model,
            provider=turn.provider,
            server_tools=turn.tools,
            client_tools=turn.client_tools,
            client_tool_runner=turn.client_tool_runner,
            user_id=session.user_id,
            thread_id=self.thread_id,
        )
        route = await session.engine.resolve(request)
        self._route = (route[1], route[0].name)
        tools = await session.engine.server_tools(request)
        await self._save_user()
        records = await session.store.messages.recent(
            session.user_id, self.thread_id, session.settings.history_limit
        )
        request.messages = history_messages(records)
        async for event in session.engine.stream_turn(request, route, tools):
            if isinstance(event, TextDelta):
                self._partial.append(event.text)
            elif isinstance(event, MessageEvent):
                self._partial.clear()  # the text is part of this message now
                event.record = await self._save(event.message, event.model, event.provider)
            yield event

    async def _save_user(self) -> None:
        content = self.turn.content if self.turn.content is not None else ""
        await self._save(Message(role="user", content=content), None, None)

    async def _start_job(self) -> dict[str, Any]:
        """Validate and start the workflow job, the user's text fed to its text input."""
        session, turn = self.session, self.turn
        jobs = session.jobs
        if jobs is None:
            raise WorkflowError("this server does not run workflows", param="workflow_id")
        _, graph = await jobs.resolve_graph(session.user_id, turn.workflow_id, turn.graph)
        params = feed_text(graph, turn.params, turn.text())
        job = await jobs.start_job(
            session.user_id,
            workflow_id=turn.workflow_id,
            graph=turn.graph,
            params=params,
            thread_id=self.thread_id,
        )
        self._job_id = job["id"]
        return job

    async def _follow_job(self, job: dict[str, Any]) -> AsyncIterator[ChatEvent]:
        """Relay the job's events; its outputs become the answer."""
        session = self.session
        jobs = session.jobs
        assert jobs is not None
        job_id = job["id"]
        final: JobUpdate | None = None
        async for event in jobs.subscribe(session.user_id, job_id):
            if is_terminal(event):
                final = event
            yield event
        self._job_id = None
        if final is None or final.status != "completed":
            ended = f"workflow job {job_id} {final.status if final is not None else 'ended'}"
            reason = (final.error if final is not None else None) or ended
            raise WorkflowError(reason, param="workflow_id")
        text = results_text(final.result)
        if text:
            yield TextDelta(text)
        reply = Message(role="assistant", content=text)
        record = await self._save(reply, None, None)
        yield MessageEvent(reply, record=record)
        yield Done(finish_reason="stop")


# ---- helpers -------------------------------------------------------------------------------


def history_messages(records: list[Record]) -> list[Message]:
    """Stored records as provider messages, keeping tool calls and results paired.

    A stopped turn or the history window can leave an assistant tool call without its result
    (or a result without its call); upstream APIs reject such history, so those are dropped.
    """
    answered = {r.get("tool_call_id") for r in records if r.get("role") == "tool"}
    called: set[str] = set()
    out: list[Message] = []
    for record in records:
        role = record.get("role")
        if role == "tool":
            if record.get("tool_call_id") not in called:
                continue
            out.append(
                Message(
                    role="tool",
                    content=record.get("content") or "",
                    tool_call_id=record.get("tool_call_id"),
                    name=record.get("name"),
                )
            )
            continue
        calls = [ToolCall.model_validate(c) for c in record.get("tool_calls") or []]
        calls = [c for c in calls if c.id in answered]
        called.update(c.id for c in calls)
        content = record.get("content")
        if role == "assistant" and not calls and content in (None, ""):
            continue
        out.append(
            Message(
                role=role,
                content=content,
                name=record.get("name") if role != "assistant" else None,
                tool_calls=calls or None,
            )
        )
    return out


def feed_text(
    graph: dict[str, Any] | None, params: dict[str, Any] | None, text: str
) -> dict[str, Any]:
    """The job params: the client's, plus the user's text on the workflow's text input.

    The text goes to the string/message inputs named in `params` with a null value; when none
    is, to the first message input (else string input) that `params` does not set.
    """
    out = dict(params or {})
    try:
        inputs = chat_text_inputs(Graph.from_dict(graph or {}))
    except WorkflowError:
        return out  # starting the job reports what is wrong with the graph
    named = [n for n in inputs if n in out and out[n] is None]
    if named:
        for name in named:
            out[name] = text
        return out
    free = [n for n in inputs if n not in out]
    if free and text:
        out[free[0]] = text
    return out


def results_text(results: Any) -> str:
    """A workflow's outputs as the assistant's answer text."""
    if not isinstance(results, dict):
        return "" if results is None else _as_text(results)
    if len(results) == 1:
        return _as_text(next(iter(results.values())))
    return "\n".join(f"{name}: {_as_text(value)}" for name, value in results.items())


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "message":
        content = value.get("content")
        if isinstance(content, str):
            return content
    return json.dumps(value, ensure_ascii=False, default=str)
