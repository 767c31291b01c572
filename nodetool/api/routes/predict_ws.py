"""`/predict` WebSocket (docs/protocol.md §5): run, follow, cancel and inspect workflow jobs.

Frames are `{command, data}` (MessagePack binary or JSON text; replies in the encoding of the
client's latest frame unless `set_mode` pinned one). Every command gets one `command_result`
or one `error` frame; a bad frame never closes the socket. A followed job's events are sent as
they happen; jobs outlive the socket, and `reconnect_job` replays a job then follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from nodetool.api.deps import get_runtime, get_user_id
from nodetool.api.ws_codec import FrameError, FrameSocket
from nodetool.errors import InvalidRequestError, NodetoolError
from nodetool.types.jobs import to_wire
from nodetool.workflows.jobs import JobManager

log = logging.getLogger("nodetool.predict_ws")

router = APIRouter(tags=["predict"])

Reply = tuple[dict[str, Any], str | None]  # (command_result fields, job to follow)


@router.websocket("/predict")
async def predict_socket(websocket: WebSocket) -> None:
    runtime = get_runtime(websocket)
    await websocket.accept()
    socket = FrameSocket(websocket, runtime.settings.max_frame_bytes)
    if runtime.jobs is None:
        await socket.send({"type": "error", "message": "this server does not run workflows"})
        await socket.close(1011, "no job manager")
        return
    await PredictConnection(socket, runtime.jobs, get_user_id(websocket)).run()


def _job_id(data: dict[str, Any]) -> str:
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRequestError("data.job_id is required (a string)", param="job_id")
    return job_id


def _job_fields(record: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "job_id": record["id"],
        "workflow_id": record.get("workflow_id"),
        "status": record.get("status"),
    }
    if record.get("status") == "completed":
        fields["result"] = record.get("results")
    elif record.get("error"):
        fields["error"] = record.get("error")
    return fields


class PredictConnection:
    """One `/predict` connection: the receive loop and one follower task per followed job."""

    def __init__(self, socket: FrameSocket, jobs: JobManager, user_id: str) -> None:
        self.socket = socket
        self.jobs = jobs
        self.user_id = user_id
        self.pinned: bool | None = None  # set_mode: True binary, False text
        self.followers: dict[str, asyncio.Task[None]] = {}
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]] = {
            "run_job": self.run_job,
            "reconnect_job": self.reconnect_job,
            "cancel_job": self.cancel_job,
            "get_status": self.get_status,
            "set_mode": self.set_mode,
        }

    async def run(self) -> None:
        try:
            while True:
                frame = await self.socket.receive()
                if self.pinned is not None:
                    self.socket.codec.binary = self.pinned
                if isinstance(frame, FrameError):
                    await self.socket.send(frame.frame())
                    continue
                await self.handle(frame)
        except WebSocketDisconnect:
            pass
        finally:
            for task in self.followers.values():  # the jobs themselves keep running
                task.cancel()
            await asyncio.gather(*self.followers.values(), return_exceptions=True)

    async def handle(self, frame: dict[str, Any]) -> None:
        command = frame.get("command")
        handler = self.commands.get(command) if isinstance(command, str) else None
        if handler is None:
            names = ", ".join(self.commands)
            message = (
                f"unknown command {command!r}; expected one of: {names}"
                if isinstance(command, str)
                else f"a frame needs a `command` (one of: {names}) and `data`"
            )
            await self.socket.send(
                {"type": "error", "message": message, "code": "unknown_command", "command": command}
            )
            return
        data = frame.get("data")
        if data is None:
            data = {}
        try:
            if not isinstance(data, dict):
                raise InvalidRequestError("`data` must be an object", param="data")
            fields, follow = await handler(data)
        except NodetoolError as exc:
            await self.socket.send(_error(command, exc, data))
            return
        except Exception as exc:
            log.exception("/predict command %s failed", command)
            await self.socket.send(
                {"type": "error", "command": command, "message": f"internal error: {exc}"}
            )
            return
        await self.socket.send({"type": "command_result", "command": command, "ok": True, **fields})
        if follow is not None:
            self.follow(follow)

    def follow(self, job_id: str) -> None:
        previous = self.followers.pop(job_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._relay(job_id))
        self.followers[job_id] = task
        task.add_done_callback(lambda t: self._forget(job_id, t))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.followers.get(job_id) is task:
            del self.followers[job_id]

    async def _relay(self, job_id: str) -> None:
        try:
            async for event in self.jobs.subscribe(self.user_id, job_id):
                if not await self.socket.send(to_wire(event)):
                    return
        except NodetoolError as exc:
            await self.socket.send(_error("reconnect_job", exc, {"job_id": job_id}))

    # ---- commands -----------------------------------------------------------------------------

    async def run_job(self, data: dict[str, Any]) -> Reply:
        thread_id = data.get("thread_id")
        record = await self.jobs.start_job(
            self.user_id,
            workflow_id=data.get("workflow_id"),
            graph=data.get("graph"),
            params=data.get("params"),
            thread_id=thread_id if isinstance(thread_id, str) else None,
        )
        return _job_fields(record), record["id"]

    async def reconnect_job(self, data: dict[str, Any]) -> Reply:
        record = await self.jobs.get(self.user_id, _job_id(data))
        return _job_fields(record), record["id"]

    async def cancel_job(self, data: dict[str, Any]) -> Reply:
        record = await self.jobs.cancel(self.user_id, _job_id(data))
        return _job_fields(record), None

    async def get_status(self, data: dict[str, Any]) -> Reply:
        if data.get("job_id") is None:  # the user's unfinished jobs, from any process
            return {
                "jobs": [_job_fields(r) for r in await self.jobs.unfinished(self.user_id)]
            }, None
        record = await self.jobs.get(self.user_id, _job_id(data))
        return _job_fields(record), None

    async def set_mode(self, data: dict[str, Any]) -> Reply:
        mode = data.get("mode")
        if mode not in ("binary", "text"):
            raise InvalidRequestError("data.mode must be 'binary' or 'text'", param="mode")
        self.pinned = mode == "binary"
        self.socket.codec.binary = self.pinned
        return {"mode": mode}, None


def _error(command: str, exc: NodetoolError, data: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "error",
        "command": command,
        "message": exc.message,
        "code": exc.code,
        "status": exc.status,
    }
    if exc.param:
        frame["param"] = exc.param
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if isinstance(job_id, str):
        frame["job_id"] = job_id
    return frame
