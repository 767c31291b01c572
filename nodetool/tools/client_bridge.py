"""The client-tool bridge of one /chat connection (docs/protocol.md §4).

The engine calls `run()` for a tool the client runs itself; the WebSocket edge sends the
`tool_call` frame and feeds the client's `tool_result` frames to `resolve()`. An answer that
arrives before `run()` starts waiting is kept for it; `cancel_all()` (stop, disconnect) ends
every wait.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from nodetool.tools.base import ToolOutcome
from nodetool.types.messages import ToolCall

MAX_EARLY = 256  # answers kept for calls whose run() has not started yet
MAX_FINISHED = 1024  # ids remembered so late answers can be told apart


class ClientToolBridge:
    """Routes client-tool calls to the client and awaits their answers with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Future[ToolOutcome]] = {}
        self._early: OrderedDict[str, ToolOutcome] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()

    def pending(self) -> list[str]:
        """Ids of the calls currently waiting for the client."""
        return list(self._waiting)

    async def run(self, call: ToolCall, args: dict[str, Any]) -> ToolOutcome:
        """Wait for the client's answer to `call`; an error outcome on timeout or cancel."""
        self._finished.pop(call.id, None)  # a provider may reuse ids across rounds
        early = self._early.pop(call.id, None)
        if early is not None:
            self._finish(call.id)
            return early
        future: asyncio.Future[ToolOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[call.id] = future
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            return ToolOutcome(
                ok=False, error=f"client tool {call.name} timed out after {self.timeout:g} s"
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the turn itself is being cancelled
            return ToolOutcome(ok=False, error=f"client tool {call.name} was cancelled")
        finally:
            self._waiting.pop(call.id, None)
            self._finish(call.id)

    def resolve(
        self, tool_call_id: str, ok: bool, result: Any = None, error: str | None = None
    ) -> bool:
        """Deliver the client's answer. False for an id that was already answered, timed out
        or cancelled; an answer for a call not yet awaited is kept for its run()."""
        if not ok and not error:
            error = "the client tool failed"
        outcome = ToolOutcome(ok=ok, result=result if ok else None, error=None if ok else error)
        future = self._waiting.get(tool_call_id)
        if future is not None:
            if future.done():
                return False
            future.set_result(outcome)
            return True
        if tool_call_id in self._finished or tool_call_id in self._early:
            return False
        self._early[tool_call_id] = outcome
        while len(self._early) > MAX_EARLY:
            self._early.popitem(last=False)
        return True

    def cancel_all(self) -> None:
        """End every wait (the turn was stopped or the client went away)."""
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._early.clear()

    def _finish(self, tool_call_id: str) -> None:
        self._finished[tool_call_id] = None
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)
