"""`/chat` WebSocket (docs/protocol.md §4): the edge around persisted chat turns.

One receive loop per connection and at most one running turn task. The loop answers control
frames at once (stop, ping, pong, client tools) while the turn streams; a new chat message
stops the running turn first. Every turn ends with exactly one `chunk` frame with `done: true`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from nodetool.api.chat_frames import (
    ChatMessageIn,
    ClientToolsManifestIn,
    ToolResultIn,
    invalid,
    parse,
)
from nodetool.api.deps import get_runtime, get_user_id
from nodetool.api.ws_codec import FrameError, FrameSocket
from nodetool.chat.session import ChatSession, PersistedTurn, TurnInput
from nodetool.errors import NodetoolError
from nodetool.runtime import Runtime
from nodetool.tools.client_bridge import ClientToolBridge
from nodetool.types.events import (
    ChatEvent,
    Done,
    MessageEvent,
    TextDelta,
    ToolCallStarted,
    ToolResultEvent,
)
from nodetool.types.jobs import JOB_EVENT_TYPES, to_wire
from nodetool.types.messages import ToolSpec

log = logging.getLogger("nodetool.chat_ws")

router = APIRouter(tags=["chat"])


@router.websocket("/chat")
async def chat_socket(websocket: WebSocket) -> None:
    runtime = get_runtime(websocket)
    await websocket.accept()
    await ChatConnection(websocket, runtime, get_user_id(websocket)).run()


@dataclass(eq=False)
class ActiveTurn:
    """The running turn of a connection and what the edge knows about it."""

    turn: PersistedTurn
    task: asyncio.Task[None] | None = None
    done_sent: bool = False
    client_calls: set[str] = field(default_factory=set)  # announced to the client


class ChatConnection:
    """One `/chat` connection: receive loop, heartbeat and the running turn."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, user_id: str) -> None:
        settings = runtime.settings
        assert runtime.engine is not None and runtime.store is not None
        self.runtime = runtime
        self.socket = FrameSocket(websocket, settings.max_frame_bytes)
        self.session = ChatSession(runtime.engine, runtime.store, settings, user_id, runtime.jobs)
        self.bridge = ClientToolBridge(settings.client_tool_timeout)
        self.manifest: list[ToolSpec] = []
        self.active: ActiveTurn | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._arm_heartbeat()
        try:
            while True:
                frame = await self.socket.receive()
                if isinstance(frame, FrameError):
                    await self.socket.send(frame.frame())
                    continue
                try:
                    await self._dispatch(frame)
                except NodetoolError as exc:
                    await self._error(exc.message, exc.code)
                except Exception as exc:  # a bug must not cost the client its socket
                    log.exception("handling a /chat frame failed")
                    await self._error(f"internal error: {type(exc).__name__}", "internal")
        except WebSocketDisconnect:
            pass
        finally:
            self._disarm_heartbeat()
            await self._stop(notify=False)
            self.bridge.cancel_all()

    # A timer, not a sleeping task: an idle socket then costs one timer handle, not a task
    # with its coroutine frame (thousands of sockets may sit idle).

    def _arm_heartbeat(self) -> None:
        interval = self.runtime.settings.ws_heartbeat_interval
        self._beat = asyncio.get_running_loop().call_later(interval, self._heartbeat)

    def _disarm_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._pinging is not None:
            self._pinging.cancel()

    def _heartbeat(self) -> None:
        self._beat = None
        self._pinging = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        sent = await self.socket.send({"type": "ping", "ts": time.time()})
        self._pinging = None
        if sent:
            self._arm_heartbeat()

    # ---- client frames -------------------------------------------------------------------

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        if "command" in frame:
            command = frame["command"]
            if command != "chat_message":
                await self._error(f"unknown command: {command!r}", "unknown_command")
            elif not isinstance(frame.get("data"), dict):
                await self._error("chat_message needs a `data` object", "invalid_frame")
            else:
                await self._on_message(frame["data"])
            return
        kind = frame.get("type")
        if kind is None and "role" not in frame and "content" not in frame:
            await self._error("frame has no `type`", "invalid_frame")
        elif kind is None or kind == "message":
            await self._on_message(frame)
        elif kind == "stop":
            await self._stop(notify=True)
        elif kind == "ping":
            await self.socket.send({"type": "pong", "ts": time.time()})
        elif kind == "pong":
            return  # answers our heartbeat
        elif kind == "client_tools_manifest":
            await self._on_manifest(frame)
        elif kind == "tool_result":
            await self._on_tool_result(frame)
        else:
            await self._error(f"unknown frame type: {kind!r}", "unknown_type")

    async def _error(self, message: str, code: str | None, **extra: Any) -> None:
        await self.socket.send({"type": "error", "message": message, "code": code, **extra})

    async def _on_message(self, data: dict[str, Any]) -> None:
        message = parse(ChatMessageIn, data, "chat message")
        if isinstance(message, FrameError):
            await self.socket.send(message.frame())
            return
        is_workflow = message.workflow_id is not None or message.graph is not None
        if message.content is None and not is_workflow:
            await self.socket.send(invalid("chat message: content is required").frame())
            return
        client_names = {spec.name for spec in self.manifest}
        server_tools = None
        if message.tools is not None:
            server_tools = [name for name in message.tools if name not in client_names]
            try:
                assert self.runtime.tools is not None
                self.runtime.tools.validate_names(server_tools)
            except NodetoolError as exc:
                await self._error(exc.message, exc.code)
                return
        await self._stop(notify=True)  # a new message stops the running turn first
        admission = None if is_workflow else self.runtime.admission  # jobs queue on their own
        if admission is not None and not admission.try_acquire():
            busy = admission.overloaded()
            await self._error(busy.message, busy.code)
            return
        turn = self.session.start(
            TurnInput(
                content=message.content,
                thread_id=message.thread_id,
                model=message.model,
                provider=message.provider,
                tools=server_tools,
                client_tools=list(self.manifest),
                client_tool_runner=self.bridge.run,
                workflow_id=message.workflow_id,
                graph=message.graph,
                params=message.params,
            )
        )
        active = ActiveTurn(turn)
        active.task = asyncio.create_task(self._run_turn(active))
        if admission is not None:
            active.task.add_done_callback(lambda _: admission.release())
        self.active = active

    async def _on_manifest(self, frame: dict[str, Any]) -> None:
        manifest = parse(ClientToolsManifestIn, frame, "client_tools_manifest")
        if isinstance(manifest, FrameError):
            await self.socket.send(manifest.frame())
            return
        self.manifest = [ToolSpec.model_validate(tool.model_dump()) for tool in manifest.tools]

    async def _on_tool_result(self, frame: dict[str, Any]) -> None:
        answer = parse(ToolResultIn, frame, "tool_result")
        if isinstance(answer, FrameError):
            await self.socket.send(answer.frame())
            return
        call_id = answer.tool_call_id
        active = self.active
        known = active is not None and call_id in active.client_calls
        if known and self.bridge.resolve(call_id, answer.is_ok, answer.result, answer.error):
            return
        await self._error(
            f"no tool call {call_id!r} is waiting for a result (unknown, answered or timed out)",
            "unknown_tool_call",
            tool_call_id=call_id,
        )

    # ---- the turn ------------------------------------------------------------------------

    async def _run_turn(self, active: ActiveTurn) -> None:
        thread_id = active.turn.thread_id
        try:
            async for event in active.turn.events():
                frame = self._frame(event, active)
                if frame is not None:
                    await self.socket.send(frame)
        except asyncio.CancelledError:
            raise
        except NodetoolError as exc:
            await self._fail(active, exc.message, exc.code)
        except Exception as exc:  # never let a turn failure kill the socket
            log.exception("chat turn failed")
            await self._fail(active, f"internal error: {type(exc).__name__}: {exc}", "internal")
        else:
            if not active.done_sent:  # a turn always ends with one done chunk
                active.done_sent = True
                await self.socket.send(_done(thread_id))
        finally:
            if self.active is active and active.done_sent:
                self.active = None

    async def _fail(self, active: ActiveTurn, message: str, code: str | None) -> None:
        thread_id = active.turn.thread_id
        await self._error(message, code, thread_id=thread_id)
        if not active.done_sent:
            active.done_sent = True
            await self.socket.send(_done(thread_id))

    def _frame(self, event: ChatEvent, active: ActiveTurn) -> dict[str, Any] | None:
        """The server frame for one turn event (None: not shown on this surface)."""
        thread_id = active.turn.thread_id
        if isinstance(event, TextDelta):
            return {"type": "chunk", "content": event.text, "done": False, "thread_id": thread_id}
        if isinstance(event, ToolCallStarted):
            if event.target == "client":
                active.client_calls.add(event.call.id)
            return {
                "type": "tool_call",
                "tool_call_id": event.call.id,
                "name": event.call.name,
                "args": event.args,
                "target": event.target,
                "thread_id": thread_id,
            }
        if isinstance(event, ToolResultEvent):
            if event.tool_call_id in active.client_calls:
                return None  # the client ran it and knows the result
            frame = {
                "type": "tool_result",
                "tool_call_id": event.tool_call_id,
                "name": event.name,
                "ok": event.ok,
                "thread_id": thread_id,
            }
            if event.ok:
                frame["result"] = event.result
            else:
                frame["error"] = event.error
            return frame
        if isinstance(event, MessageEvent):
            return _message_frame(event, thread_id)
        if isinstance(event, JOB_EVENT_TYPES):
            return {**to_wire(event), "thread_id": thread_id}
        if isinstance(event, Done):
            active.done_sent = True
            return _done(thread_id)
        return None

    async def _stop(self, notify: bool) -> None:
        """Stop the running turn (if any): cancel it, cancel client-tool waits, save the
        partial answer; when notifying, send it, `generation_stopped` and the done chunk."""
        active, self.active = self.active, None
        if active is None or active.task is None:
            return
        if not active.task.done():
            active.task.cancel()
        await asyncio.wait([active.task])
        self.bridge.cancel_all()
        if active.done_sent:
            return  # it had ended already
        active.done_sent = True
        record = await active.turn.finish_stopped()
        if not notify:
            return
        thread_id = active.turn.thread_id
        if record is not None:
            await self.socket.send({**record, "type": "message", "thread_id": thread_id})
        await self.socket.send({"type": "generation_stopped", "thread_id": thread_id})
        await self.socket.send(_done(thread_id))


def _done(thread_id: str) -> dict[str, Any]:
    return {"type": "chunk", "content": "", "done": True, "thread_id": thread_id}


def _message_frame(event: MessageEvent, thread_id: str) -> dict[str, Any]:
    record = event.record
    if record is None:
        record = event.message.model_dump(mode="json", exclude_none=True)
        record.update(model=event.model, provider=event.provider)
    return {**record, "type": "message", "thread_id": thread_id}
